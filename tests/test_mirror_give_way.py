"""Mirrors give way to analysis: pending changes wait while photos are queued, within a limit."""

from __future__ import annotations

import time
from pathlib import Path

from dupligoned.adapters.config import parse_config
from dupligoned.adapters.index import open_index
from dupligoned.daemon.mirror_tasks import DEFER_MAX_S, MirrorRunner


def test_changes_wait_while_analysis_is_busy_but_not_for_ever(tmp_path: Path) -> None:
    cfg = parse_config({"state_dir": str(tmp_path / "state")}, base_dir=tmp_path)
    index = open_index(tmp_path / "index.db")
    runner = MirrorRunner(cfg, index)
    made = time.time()
    with index.tx() as conn:
        conn.execute("INSERT INTO mirror_outbox(mirror, entity, key, version, queued_at) "
                     "VALUES ('azure', 'blob', 'abc', 1, ?)", (made,))
    runner._analysis_busy = True
    assert runner._give_way("azure", made + 1)  # photos are waiting: the upload waits too
    assert not runner._give_way("azure", made + DEFER_MAX_S + 1)  # but never longer than the limit
    assert not runner._give_way("mongo", made + 1)  # nothing waits for this mirror
    runner._analysis_busy = False
    assert not runner._give_way("azure", made + 1)  # analysis done: push now
