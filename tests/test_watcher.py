"""The watcher's parts: stability of landing files, and waking the daemon's loop on events."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from dupligoned.daemon.watcher import StabilityTracker, Watcher


def test_a_file_is_ready_once_unchanged_for_stable_s_and_the_loop_knows_when(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x" * 10)
    t = StabilityTracker(stable_s=0.5)
    assert t.next_due(100.0) is None  # nothing tracked: the loop may sleep its idle tick
    t.touch(str(f), 100.0)
    assert abs(t.next_due(100.2) - 0.3) < 1e-9  # type: ignore[operator]
    assert list(t.ready(100.2)) == []
    with f.open("ab") as fh:  # still being written: its clock starts again
        fh.write(b"more")
    assert list(t.ready(100.6)) == []
    assert abs(t.next_due(100.6) - 0.5) < 1e-9  # type: ignore[operator]
    (path, st), = t.ready(101.2)
    assert path == str(f) and st.st_size == 14
    assert t.next_due(101.2) is None and len(t) == 0


def test_the_watcher_wakes_its_owner_on_each_event(tmp_path: Path) -> None:
    woke = threading.Event()
    w = Watcher(poll_interval_s=30.0, on_event=woke.set)
    assert w.watch(str(tmp_path), "native") == "native"
    try:
        (tmp_path / "new.jpg").write_bytes(b"\xff\xd8\xff")
        assert woke.wait(5.0), "no wake-up within 5 s of a new file"
        kinds = {(e.kind, os.path.basename(e.src)) for e in w.drain()}
        assert ("created", "new.jpg") in kinds
    finally:
        w.stop()


def test_a_settled_file_is_ready_at_once_unless_it_changes(tmp_path: Path) -> None:
    f = tmp_path / "done.jpg"
    f.write_bytes(b"x" * 10)
    t = StabilityTracker(stable_s=30.0)
    t.touch(str(f), 100.0, settled=True)
    assert t.next_due(100.0) == 0.0
    assert [p for p, _ in t.ready(100.0)] == [str(f)]
    t.touch(str(f), 200.0, settled=True)
    with f.open("ab") as fh:  # written again after all: back to waiting stable_s
        fh.write(b"more")
    assert list(t.ready(200.0)) == []
    assert list(t.ready(229.0)) == [] and len(t) == 1


def test_landing_names() -> None:
    from dupligoned.adapters.walk import is_landing_name

    for name in ("a.jpg.part", "a.jpg.crdownload", ".a.jpg.Xy12Ab", ".syncthing.a.jpg.tmp", "a.JPG.TMP"):
        assert is_landing_name(name), name
    for name in ("a.jpg", "IMG_0001.HEIC", "part.jpg"):
        assert not is_landing_name(name), name
