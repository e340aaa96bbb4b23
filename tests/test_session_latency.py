"""A photo that lands alone is grouped promptly (issue 14: a 1-photo session within a second at
library scale): with the real daemon, its session closes ``quiet_s`` after the photo arrived —
when due, not at the loop's next once-a-second housekeeping — is not grouped preliminarily
first (it is about to close), and its copy of an old photo is found."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests import corpus
from tests.daemon_support import Daemon, copy_photo, rows, wait_for, write_config

QUIET_S = 1.5
LATE_S = 0.35  # the close may come this much after it is due (a loaded test machine)


def test_a_lone_photo_is_grouped_quiet_s_after_it_lands(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    singles = corpus.singletons(4)
    for rel in singles:
        copy_photo(rel, lib / "old")
    cfg = write_config(tmp_path, [lib], watch={"stable_s": 0.3, "rescan_every_min": 0.0},
                       sessions={"quiet_s": QUIET_S, "recluster_every_s": 2.0})
    with Daemon(cfg) as d:
        wait_for(lambda: rows(cfg, "SELECT 1 FROM sessions WHERE kind = 'first_scan' AND clustered_at IS NOT NULL "
                              "AND dirty = 0"), 120, "the first scan grouped")
        landed = []
        for k, rel in enumerate(singles):
            # A copy of an old photo, renamed in from a landing name: taken at once.
            dest = lib / "new" / f"copy{k}.jpg"
            dest.parent.mkdir(exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            shutil.copy2(corpus.PHOTOS / rel, part)
            os.rename(part, dest)
            landed.append(dest)
            r = wait_for(lambda dest=dest: rows(
                cfg, "SELECT s.last_added_at, s.closed_at, s.clustered_at, s.dirty FROM photos p "
                "JOIN sessions s ON s.id = p.session_id WHERE p.path = ? AND s.closed_at IS NOT NULL "
                "AND s.clustered_at IS NOT NULL AND s.dirty = 0", (str(dest),)), 60, f"{dest.name}'s session grouped",
                every=0.05)[0]
            late = float(r["closed_at"]) - float(r["last_added_at"]) - QUIET_S
            assert 0 <= late < LATE_S, (dest.name, late)
        log = d.log()
    assert "preliminary" not in log  # none of them was grouped before its session closed
    for k, rel in enumerate(singles):
        members = rows(cfg, "SELECT p.path FROM group_members m JOIN photos p ON p.id = m.photo_id WHERE m.group_id = "
                       "(SELECT m2.group_id FROM group_members m2 JOIN photos p2 ON p2.id = m2.photo_id "
                       "WHERE p2.path = ?)", (str(landed[k]),))
        assert {str(m["path"]) for m in members} == {str(landed[k]), str(lib / "old" / rel)}
