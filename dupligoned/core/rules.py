"""The promises and the person's rules that stand above the keeper's own choice (``keeper.py``).

In order, each with the reason it gives:

1. A photo the person chose to keep (Keep, "not a duplicate", a restore from the trash) and a
   photo in a folder they never delete from are never recommended for deletion again.
2. An upload is a newcomer: a copy of a photo already in the library is the one recommended to
   go, even when it looks better (the reason then says so, and the person may keep it).
3. "Keep photos from" a folder: the keeper comes from that folder when a member is in it.
4. "Prefer" RAW, the largest, the oldest or the newest: the keeper is chosen among those.

``keeper_pool`` says which members the keeper may come from (and why the others may not);
``relabel`` rewrites a decision's reasons where a rule or a promise decided. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from dupligoned.core.model import GroupDecision, PhotoInfo, Verdict

PREFER = ("", "raw", "largest", "oldest", "newest")
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2",
                            ".raf", ".pef", ".srw", ".3fr", ".iiq", ".rwl", ".x3f", ".erf", ".kdc", ".mrw"})


@dataclass(frozen=True)
class Rules:
    prefer: str = ""  # one of PREFER
    keep_from: tuple[str, ...] = ()  # absolute folders
    never_delete_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.prefer not in PREFER:
            raise ValueError(f"prefer must be one of {PREFER}")

    @property
    def empty(self) -> bool:
        return not (self.prefer or self.keep_from or self.never_delete_from)


def _base(folder: str) -> str:
    return folder.rstrip("/").rsplit("/", 1)[-1] or folder


def _ext(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def inside(path: str, folders: Sequence[str]) -> str | None:
    """The folder of ``folders`` that holds ``path``, if any."""
    for f in folders:
        if path == f or path.startswith(f.rstrip("/") + "/"):
            return f
    return None


def is_raw(p: PhotoInfo) -> bool:
    return _ext(p.path) in RAW_EXTENSIONS or p.format.upper() in {"DNG", "RAW"}


def _name(p: PhotoInfo) -> str:
    return p.path.rsplit("/", 1)[-1]


def fixed_keeps(photos: Sequence[PhotoInfo], rules: Rules, kept: Mapping[str, str]) -> dict[str, str]:
    """Members that are kept whatever else holds: path -> why (promise 1)."""
    out: dict[str, str] = {}
    for p in photos:
        if p.path in kept:
            out[p.path] = kept[p.path]
        elif (f := inside(p.path, rules.never_delete_from)) is not None:
            out[p.path] = f"in {_base(f)}, a folder you never delete from"
    return out


def keeper_pool(photos: Sequence[PhotoInfo], rules: Rules, newcomers: frozenset[str] = frozenset()
                ) -> tuple[list[int], dict[int, str]]:
    """Indices of the members the keeper may come from, and for each member left out the rule
    that left it out (``{keeper}`` in the text stands for the keeper's name). Never empty."""
    pool = list(range(len(photos)))
    out: dict[int, str] = {}

    def narrow(keep: list[int], why: str) -> None:
        nonlocal pool
        if keep and len(keep) < len(pool):
            out.update({k: why for k in pool if k not in keep})
            pool = keep

    narrow([k for k in pool if photos[k].path not in newcomers],
           "uploaded copy of {keeper}, which is already in your library")
    if rules.keep_from:
        f = next((f for k in pool if (f := inside(photos[k].path, rules.keep_from))), None)
        if f is not None:
            narrow([k for k in pool if inside(photos[k].path, rules.keep_from)],
                   f"copy of {{keeper}} (your rule: keep photos from {_base(f)})")
    if rules.prefer == "raw":
        narrow([k for k in pool if is_raw(photos[k])], "copy of the RAW {keeper} (your rule: prefer RAW)")
    elif rules.prefer == "largest":
        top = max(photos[k].pixels for k in pool)
        narrow([k for k in pool if photos[k].pixels == top], "smaller copy of {keeper} (your rule: prefer the largest)")
    elif rules.prefer in ("oldest", "newest"):
        dated = [k for k in pool if photos[k].taken_at]
        if dated:
            pick = (min if rules.prefer == "oldest" else max)(str(photos[k].taken_at) for k in dated)
            narrow([k for k in dated if photos[k].taken_at == pick],
                   f"{'newer' if rules.prefer == 'oldest' else 'older'} copy of {{keeper}} "
                   f"(your rule: prefer the {rules.prefer})")
    return pool, out


def merge(photos: Sequence[PhotoInfo], inner: GroupDecision, left_out: Mapping[int, str],
          fixed: Mapping[str, str], full: GroupDecision | None = None) -> GroupDecision:
    """The group's decision from ``inner`` (the keeper's decision over the pool) and the members
    ``left_out`` of the pool (recommended to go with the rule's reason, unless ``fixed``).
    ``full``: the keeper's decision over every member, to say when a newcomer looked better."""
    verdict = {v.path: v for v in inner.verdicts}
    keeper = next((v.path for v in inner.verdicts if v.keep), inner.members[0])
    full_keep = set(full.keep) if full is not None else set()
    full_reason = {v.path: v.reason for v in full.verdicts} if full is not None else {}
    for k, why in left_out.items():
        p = photos[k]
        text = why.format(keeper=keeper.rsplit("/", 1)[-1])
        if p.path in full_keep and keeper in full_reason:
            text += f"; this one looks better ({full_reason[keeper]}): choose Keep if you want it"
        elif keeper in full_keep and p.path in full_reason and p.path not in full_keep:
            text = f"{full_reason[p.path]} (an upload; your library already has this photo)"
        verdict[p.path] = Verdict(p.path, False, text)
    # ``replace`` keeps whatever else the keeper's decision carries (faces, its own flags).
    return relabel(replace(inner, members=tuple(sorted(verdict)), verdicts=tuple(verdict[k] for k in sorted(verdict))),
                   fixed)


def relabel(decision: GroupDecision, fixed: Mapping[str, str]) -> GroupDecision:
    """Members in ``fixed`` are kept, with why."""
    if not fixed:
        return decision
    vs = tuple(Verdict(v.path, True, fixed[v.path]) if v.path in fixed else v for v in decision.verdicts)
    return replace(decision, verdicts=vs)
