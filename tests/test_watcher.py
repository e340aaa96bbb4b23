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
