"""The work queue: huey, SqliteHuey by default, RedisHuey when ``queue.redis_url`` is set.

Two queues on the same backend:

* ``dupligone`` (analysis): tasks carry a photo id, a path and the analysis settings. Workers
  (processes, maybe on other machines) run ``ingest.analyse_for_index`` and put the result on
* ``dupligone-results``: plain JSON messages that only the daemon reads and writes into the
  index. Workers never touch the index, so a worker on another machine needs only the library
  path and the queue.

A passing failure (an unreadable file on a flaky NAS) raises, and huey retries the task with
backoff; on the last attempt the failure is recorded as the photo's error instead.

Before analysing, a worker says which photo it holds (``{"started": true, "photo_id", "host",
"pid"}`` on the results queue), so that the daemon sees at once when a worker dies on a photo.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey

from dupligoned.adapters.config import Config
from dupligoned.errors import ConfigError
from dupligoned.services.ingest import AnalysisJob, analyse_for_index

ANALYSIS_QUEUE = "dupligone"
RESULTS_QUEUE = "dupligone-results"
TASK_NAME = "analyse"
HOST = socket.gethostname()


def _make(cfg: Config, name: str, **kw: Any) -> Huey:
    if cfg.queue.redis_url:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigError(["At 'queue.redis_url': the Redis queue needs the extra: pip install 'dupligone[redis]'"]) from None
        return RedisHuey(name, url=cfg.queue.redis_url, results=False, **kw)
    os.makedirs(cfg.state_dir, exist_ok=True)
    return SqliteHuey(name, filename=str(cfg.queue_path), timeout=cfg.queue.lock_timeout_s, results=False, **kw)


@dataclass
class Queues:
    analysis: Huey
    results: Huey
    task: Any  # the registered huey task: ``task(job_dict)`` enqueues

    def enqueue(self, job: AnalysisJob) -> None:
        self.task(dataclasses.asdict(job))

    def pending(self) -> int:
        return int(self.analysis.pending_count()) + int(self.analysis.scheduled_count())

    def put_result(self, payload: dict[str, Any]) -> None:
        self.results.storage.enqueue(json.dumps(payload).encode("utf-8"))

    def take_result(self) -> dict[str, Any] | None:
        data = self.results.storage.dequeue()
        if data is None:
            return None
        out: dict[str, Any] = json.loads(data)
        return out

    def flush_analysis(self) -> None:
        """Empty the analysis queue and its retry schedule (the index says what is still to do)."""
        self.analysis.storage.flush_queue()
        self.analysis.storage.flush_schedule()


def make_queues(cfg: Config, *, on_result: Callable[[Queues, dict[str, Any]], None] | None = None) -> Queues:
    """The queues for ``cfg``, with the analysis task registered (the same in daemon and workers)."""
    analysis = _make(cfg, ANALYSIS_QUEUE)
    results = _make(cfg, RESULTS_QUEUE)
    q: Queues

    @analysis.task(retries=cfg.queue.retries, retry_delay=cfg.queue.retry_delay_s, retry_backoff=2,
                   context=True, name=TASK_NAME)  # type: ignore[untyped-decorator]
    def analyse(job: dict[str, Any], task: Any = None) -> None:
        q.put_result({"started": True, "photo_id": job["photo_id"], "host": HOST, "pid": os.getpid()})
        payload = analyse_for_index(AnalysisJob(**job), last_attempt=task is None or task.retries == 0)
        q.put_result(payload)

    q = Queues(analysis, results, analyse)
    return q
