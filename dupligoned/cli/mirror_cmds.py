"""``dupligone mirror resync|status``: the mirrors by hand."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from dupligoned.errors import UsageError


def _cfg_and_index(args: argparse.Namespace) -> tuple[Any, Any]:
    from dupligoned.adapters.config import find_config, load_config
    from dupligoned.adapters.index import open_index

    cfg = load_config(find_config(args.config))
    return cfg, open_index(cfg.index_path)


def cmd_resync(args: argparse.Namespace) -> int:
    """Make the mirrors equal to the local index now: write what is missing, delete what the
    index no longer has. Safe while the daemon runs (every write is idempotent)."""
    from dupligoned.services import mirror

    cfg, index = _cfg_and_index(args)
    try:
        on = mirror.configured(cfg)
        names = [args.mirror] if args.mirror else on
        for n in names:
            if n not in on:
                raise UsageError(f"the {n} mirror is not configured (no [{n}] table in {cfg.source})")
        if not names:
            raise UsageError(f"no mirror is configured in {cfg.source} (add an [azure] or [mongo] table)")
        mirror.check_extras(cfg)
        t0 = time.perf_counter()
        out = mirror.resync(index, cfg, names)
    finally:
        index.close()
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for n, counts in out.items():
            print(f"{n}: {counts['written']} written, {counts['deleted']} deleted")
        print(f"in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_mirror_status(args: argparse.Namespace) -> int:
    from dupligoned.adapters import outbox

    _cfg, index = _cfg_and_index(args)
    try:
        st = outbox.state(index.conn)
    finally:
        index.close()
    if args.json:
        json.dump(st, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not st:
        print("no mirror is on")
    for m in st:
        print(format_mirror(m))
    return 0


def format_mirror(m: dict[str, Any]) -> str:
    """One line per mirror for ``dupligone status``."""
    line = f"  {m['name']:<6} {m['pending']} changes pending, lag {m['lag_s']:.0f} s"
    if m.get("last_error") and (m.get("last_ok_at") or 0) < (m.get("last_error_at") or 0):
        ago = time.time() - float(m["last_error_at"])
        line += f"; last error {ago:.0f} s ago: {m['last_error']}"
    return line


def add_mirror_commands(sub: Any) -> None:
    from dupligoned.cli.daemon_cmds import CONFIG_HELP

    mp = sub.add_parser("mirror", help="the Azure Blob and MongoDB mirrors")
    msub = mp.add_subparsers(dest="mirror_command", required=True)
    sp = msub.add_parser("resync", help="rebuild the mirrors from the local index (write missing, delete extra)")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--mirror", choices=["azure", "mongo"], default=None, help="only this mirror (default: every one on)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_resync)
    sp = msub.add_parser("status", help="pending changes, lag and last error of each mirror")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_mirror_status)
