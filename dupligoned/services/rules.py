"""The person's keeper rules: from the config (``[rules]``), or as last saved from the review
page (kept in the index, they win over the config). A change applies at the next grouping:
every session not yet reviewed is marked to be grouped again."""

from __future__ import annotations

import json
import os

from dupligoned.adapters.config import RulesConfig
from dupligoned.adapters.index import Index
from dupligoned.core.rules import PREFER, Rules
from dupligoned.errors import DupliGoneError

META_KEY = "rules"


class RulesError(DupliGoneError):
    pass


def from_config(cfg: RulesConfig) -> Rules:
    return Rules(cfg.prefer, tuple(cfg.keep_from), tuple(cfg.never_delete_from))


def effective(index: Index, configured: Rules) -> Rules:
    """The rules in force: the page's last save, else ``configured``."""
    raw = index.get_meta(META_KEY)
    if not raw:
        return configured
    d = json.loads(raw)
    return Rules(str(d.get("prefer", "")), tuple(d.get("keep_from", ())), tuple(d.get("never_delete_from", ())))


def _folders(text: str | list[str], libraries: list[str], what: str) -> tuple[str, ...]:
    items = text.splitlines() if isinstance(text, str) else text
    out = []
    for raw in items:
        p = raw.strip()
        if not p:
            continue
        real = os.path.realpath(p)
        if not any(real == lib or real.startswith(lib.rstrip(os.sep) + os.sep) for lib in libraries):
            raise RulesError(f"{what}: {p} is not inside a library folder")
        out.append(real)
    return tuple(out)


def save(index: Index, libraries: list[str], *, prefer: str, keep_from: str | list[str],
         never_delete_from: str | list[str]) -> int:
    """Save the page's rules (folders one per line, inside a library) and mark the sessions not
    yet reviewed to be grouped again; returns how many. Raises ``RulesError``."""
    if prefer not in PREFER:
        raise RulesError(f"prefer must be one of {', '.join(repr(p) for p in PREFER)}")
    libs = [os.path.realpath(lib) for lib in libraries]
    rules = Rules(prefer, _folders(keep_from, libs, "Keep photos from"),
                  _folders(never_delete_from, libs, "Never delete from"))
    with index.tx() as conn:
        index.set_meta(conn, META_KEY, json.dumps({"prefer": rules.prefer, "keep_from": list(rules.keep_from),
                                                   "never_delete_from": list(rules.never_delete_from)}))
        cur = conn.execute("UPDATE sessions SET dirty = 1 WHERE reviewed_at IS NULL AND clustered_at IS NOT NULL")
        return int(cur.rowcount)
