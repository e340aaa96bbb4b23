"""Mirror tasks: draining the outbox of each mirror as huey tasks, retried with backoff.

The tasks run inside the daemon, on their own in-memory huey queue with a thread consumer,
because they read the local index and thumbnails (workers on other machines have neither), and
they are network-bound, not CPU-bound. The queue itself holds nothing that matters: the outbox
in the index is the durable part, so a restart loses no change and an in-memory queue is enough.

``tick`` (called from the daemon's loop) enqueues ``mirror_drain(name)`` for each mirror that
has pending changes and is neither queued nor waiting out a backoff. A drain pushes batches
until the outbox is empty. When the mirror is down the task records the error and schedules
itself again after a capped exponential backoff (1 s, 2 s, 4 s … 60 s; huey's own retry
backoff has no cap, and a mirror down for a night should be retried within a minute of its
return). Analysis, review and deletion never wait for any of this.

Mirror threads run at a lower CPU priority than the daemon so that analysis comes first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from huey import MemoryHuey
from huey.consumer import Consumer

from dupligoned.adapters import outbox
from dupligoned.adapters.config import Config
from dupligoned.adapters.index import Index, open_index
from dupligoned.errors import MirrorError
from dupligoned.services import mirror

log = logging.getLogger("dupligone.mirror")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
TICK_EVERY_S = 0.5
# While photos wait for analysis, mirror changes wait too, at most this long (then they go
# anyway: a mirror never falls behind without bound on a library that keeps growing).
DEFER_MAX_S = 300.0


class _InProcessConsumer(Consumer):  # type: ignore[misc]
    """A huey consumer that leaves signals to the daemon (it is not the main program here)."""

    def _set_signal_handlers(self) -> None:
        pass


@dataclass
class _Mirror:
    sync: mirror.Sync
    index: Index
    lock: threading.Lock = field(default_factory=threading.Lock)
    queued: bool = False
    retry_at: float = 0.0


class MirrorRunner:
    """The mirrors of one daemon. ``start`` / ``tick`` / ``stop``; does nothing without mirrors."""

    def __init__(self, cfg: Config, index: Index, *, backoff_first_s: float = BACKOFF_FIRST_S,
                 backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.cfg = cfg
        self.index = index  # the daemon's connection, for the cheap "anything pending?" check
        self.names = mirror.configured(cfg)
        self.backoff_first_s, self.backoff_max_s = backoff_first_s, backoff_max_s
        self.mirrors: dict[str, _Mirror] = {}
        self._stop = threading.Event()
        self._last_tick = 0.0
        self._analysis_busy = False
        self.consumer: Any = None
        self.task: Any = None

    def start(self) -> None:
        """Check the extras, record which mirrors are on, start the consumer. Raises
        ``MissingExtra`` / ``ConfigError`` naming what is missing."""
        fresh = mirror.enable(self.index, self.cfg)
        if not self.names:
            return
        mirror.check_extras(self.cfg)
        for name in self.names:
            self.mirrors[name] = _Mirror(mirror.make_sync(self.cfg, name), open_index(self.cfg.index_path))
        if fresh:
            log.info("mirrors enabled: %s (a full comparison with the index is queued)", ", ".join(fresh))
        huey = MemoryHuey("dupligone-mirror", results=False)

        @huey.task(name="mirror_drain")  # type: ignore[untyped-decorator]
        def mirror_drain(name: str) -> None:
            self.drain(name)

        self.task = mirror_drain
        self.consumer = _InProcessConsumer(
            huey, workers=len(self.names), worker_type="thread", periodic=False, initial_delay=0.05,
            backoff=1.5, max_delay=0.5, scheduler_interval=1, check_worker_health=False,
        )
        self.consumer.start()
        log.info("mirrors on: %s", ", ".join(self.names))

    def tick(self, now: float | None = None, *, analysis_busy: bool = False) -> None:
        """Queue a drain for each mirror with pending changes (cheap; call it often).

        While photos wait for analysis, mirrors give way: uploads and documents wait until the
        analysis queue is empty, or until the oldest waiting change is ``DEFER_MAX_S`` old, so
        mirroring never slows the work a person is waiting for (and never lags without bound).
        """
        if not self.mirrors:
            return
        now = time.time() if now is None else now
        self._analysis_busy = analysis_busy
        if now - self._last_tick < TICK_EVERY_S:
            return
        self._last_tick = now
        for name, m in self.mirrors.items():
            if m.queued or now < m.retry_at or self._give_way(name, now):
                continue
            if outbox.has_pending(self.index.conn, name):
                m.queued = True
                self.task(name)

    def _give_way(self, name: str, now: float, index: Index | None = None) -> bool:
        """True while analysis is busy and this mirror's oldest change is younger than the limit."""
        if not self._analysis_busy:
            return False
        oldest = outbox.oldest_pending_at((index or self.index).conn, name)
        return oldest is not None and now - oldest < DEFER_MAX_S

    def drain(self, name: str) -> int:
        """The task body: push until the outbox of ``name`` is empty; on failure schedule a
        retry after the backoff. Returns how many changes were pushed."""
        m = self.mirrors[name]
        if not m.lock.acquire(blocking=False):
            m.queued = False  # another drain of this mirror runs; it empties the outbox
            return 0
        try:
            m.queued = False
            mirror.lower_thread_priority()
            try:
                n = mirror.drain(m.index, m.sync, stop=self._stop,
                                 pause=lambda: self._give_way(name, time.time(), m.index))
            except MirrorError as exc:
                failures = m.index.mirror_failures(name) or 1
                delay = min(self.backoff_max_s, self.backoff_first_s * 2 ** (failures - 1))
                m.retry_at = time.time() + delay
                log.warning("mirror %s: %s; retrying in %.0f s", name, exc, delay)
                if not self._stop.is_set():
                    m.queued = True
                    self.task.schedule(args=(name,), delay=delay)
                return 0
            except Exception:  # a bug must not kill the consumer thread; the outbox keeps the work
                log.exception("mirror %s: unexpected failure", name)
                m.retry_at = time.time() + self.backoff_max_s
                return 0
            if n:
                log.debug("mirror %s: pushed %d changes", name, n)
            return n
        finally:
            m.lock.release()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop pushing (a batch in flight finishes or stays in the outbox)."""
        self._stop.set()
        if self.consumer is not None:
            self.consumer.shutdown_timeout = timeout_s
            self.consumer.stop(graceful=True)
        for m in self.mirrors.values():
            m.index.close()


def start_mirrors(cfg: Config, index: Index) -> MirrorRunner:
    """A started runner for ``cfg`` (a no-op runner when no mirror is configured)."""
    runner = MirrorRunner(cfg, index)
    runner.start()
    return runner
