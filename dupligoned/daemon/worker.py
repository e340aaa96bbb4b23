"""The analysis workers: a huey consumer with one process per core.

The daemon starts this as a child process (``python -m dupligoned.daemon.worker``); on another
machine ``dupligone worker --config FILE`` runs the same consumer against a shared Redis queue.
The consumer forks its workers from a single-threaded process (forking the daemon, which runs
threads, would not be safe), and every process dies with its parent: a ``kill -9`` of the
daemon leaves no orphan working on.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence

from dupligoned.adapters.config import Config, find_config, load_config

PR_SET_PDEATHSIG = 1
log = logging.getLogger("dupligone.worker")


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)  # the parent died before we asked


class _QuietRetries(logging.Filter):
    """Drop huey's traceback for a task that failed for a passing reason and will be retried
    (``TransientError``): the daemon logs one line if the last attempt fails too."""

    def filter(self, record: logging.LogRecord) -> bool:
        from dupligoned.services.ingest import TransientError

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, TransientError)


def run_worker(cfg: Config, workers: int, *, tied_to_parent: bool = False) -> None:
    """Run the consumer until SIGINT (finish running tasks, then stop) or SIGTERM (stop now)."""
    from dupligoned.daemon.queue import make_queues
    from dupligoned.services import analyse  # noqa: F401  (imported before forking: shared pages)

    if tied_to_parent:
        die_with_parent(int(os.environ.get("DUPLIGONE_PARENT_PID") or 0) or None)
    logging.getLogger("huey").addFilter(_QuietRetries())
    q = make_queues(cfg)
    consumer_pid = os.getpid()
    # Every process the consumer forks (workers and its scheduler) dies with it.
    os.register_at_fork(after_in_child=lambda: die_with_parent(consumer_pid))

    @q.analysis.on_startup()  # type: ignore[untyped-decorator]
    def _init_worker() -> None:
        import cv2

        cv2.setNumThreads(1)  # one process per core already

    n = workers or os.cpu_count() or 1
    # An idle worker polls the queue every 0.25 s at most (SqliteHuey cannot wake it): the first
    # photo of a new batch waits ≤ 0.25 s, not ≤ 1 s, for ~0.1% of a core while idle.
    consumer = q.analysis.create_consumer(
        workers=n, worker_type="process", periodic=False, initial_delay=0.05, backoff=1.5, max_delay=0.25,
        check_worker_health=True, health_check_interval=5,
    )
    log.info("analysis workers: %d processes on %s", n, "redis" if cfg.queue.redis_url else cfg.queue_path)
    consumer.run()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dupligone worker", description="Run analysis workers.")
    ap.add_argument("--config", default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--tied-to-parent", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cfg = load_config(find_config(args.config))
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("huey").setLevel(logging.WARNING if cfg.log_level != "debug" else logging.DEBUG)
    run_worker(cfg, args.workers if args.workers is not None else cfg.queue.workers, tied_to_parent=args.tied_to_parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
