"""A brake on log floods: one message repeated thousands of times a second (a resource running
out, a loop failing fast) must not fill the disk. Each message template may be logged
``burst`` times per ``window_s``; the rest are counted and the next line that gets through says
how many were left out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimit(logging.Filter):
    def __init__(self, burst: int = 50, window_s: float = 10.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.burst, self.window_s, self.max_keys = burst, window_s, max_keys
        self.seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        key = (record.name, record.levelno, str(record.msg))
        slot = self.seen.get(key)
        if slot is None or now - slot[0] >= self.window_s:
            dropped = int(slot[2]) if slot is not None else 0
            if len(self.seen) >= self.max_keys:
                self.seen.clear()
            self.seen[key] = [now, 1.0, 0.0]
            if dropped:
                record.msg = f"{record.msg} [{dropped} more lines like this were not logged]"
            return True
        slot[1] += 1
        if slot[1] <= self.burst:
            return True
        slot[2] += 1
        return False


def install(logger: logging.Logger | None = None) -> RateLimit:
    """Put one ``RateLimit`` on every handler of ``logger`` (the root logger by default)."""
    f = RateLimit()
    for h in (logger or logging.getLogger()).handlers:
        h.addFilter(f)
    return f
