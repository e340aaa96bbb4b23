"""The promises and rules above the keeper's choice (core/rules.py through the cluster service's
``decide_with_rules``), on value objects with the core keeper as the decider."""

from __future__ import annotations

from dupligoned.core import keeper
from dupligoned.core.model import PhotoInfo
from dupligoned.core.quality import Quality
from dupligoned.core.rules import Rules
from dupligoned.services.cluster import decide_with_rules


def photo(path: str, w: int = 4000, h: int = 3000, *, fmt: str = "JPEG", taken: str | None = None, q: int = 95,
          h64: int = 0x0F0F0F0F0F0F0F0F) -> PhotoInfo:
    return PhotoInfo(path=path, size_bytes=w * h // 4, width=w, height=h, format=fmt, lossless=False, jpeg_quality=q,
                     content_hash=path, phash=h64, dhash=h64, quality=Quality(100.0, 120.0, 50.0, 1.0, 0),
                     taken_at=taken, camera="Cam" if taken else None)


def decide(photos, rules=Rules(), kept=None, newcomers=frozenset()):  # type: ignore[no-untyped-def]
    return decide_with_rules(photos, keeper.KeeperParams(), lambda ps, params: keeper.decide(ps, None, params),
                             rules, kept or {}, newcomers)


def test_an_upload_never_costs_a_library_photo_even_when_it_looks_better() -> None:
    lib = photo("/lib/IMG_1.jpg", 1600, 1200, taken="2020:01:01 10:00:00")
    up = photo("/lib/DupliGone uploads/t/IMG_1.png", 4000, 3000, fmt="PNG")
    assert keeper.decide([lib, up]).keep == [up.path]  # the keeper alone would keep the upload
    d = decide([lib, up], newcomers=frozenset({up.path}))
    assert d.keep == [lib.path] and d.delete == [up.path]
    why = {v.path: v.reason for v in d.verdicts}[up.path]
    assert "already in your library" in why and "looks better" in why


def test_a_kept_photo_stays_kept_whatever_the_rules() -> None:
    a, b = photo("/lib/a.jpg", 800, 600), photo("/lib/b.jpg")
    d = decide([a, b], Rules(prefer="largest"), kept={a.path: "you restored it from the trash"})
    assert set(d.keep) == {a.path, b.path}
    assert {v.path: v.reason for v in d.verdicts}[a.path] == "you restored it from the trash"


def test_rules_choose_the_keeper() -> None:
    old = photo("/lib/2019/x.jpg", taken="2019:05:01 12:00:00")
    new = photo("/lib/phone/x.jpg", taken="2021:05:01 12:00:00", q=80)
    raw = photo("/lib/raw/x.dng", fmt="TIFF", taken="2020:05:01 12:00:00", q=70)
    assert decide([old, new], Rules(prefer="newest")).keep == [new.path]
    assert decide([old, new], Rules(prefer="oldest")).keep == [old.path]
    assert decide([old, new, raw], Rules(prefer="raw")).keep == [raw.path]
    assert decide([old, new], Rules(keep_from=("/lib/phone",))).keep == [new.path]
    d = decide([old, new], Rules(never_delete_from=("/lib/phone",)))
    assert d.keep == [new.path] and "never delete" in {v.path: v.reason for v in d.verdicts}[new.path]
