"""Serving the review page: uvicorn in a thread of the daemon (or of ``dupligone web``).

``check_listen`` refuses, at start, to listen beyond loopback without a password: the review
page can delete photos, so on a LAN it must be behind a login.

Connection hygiene (idle sockets must not take the page down): a connection must send a whole
request head within ``HEADER_TIMEOUT_S`` (uvicorn has only a keep-alive timeout); open
connections are capped below the process's file limit, and a new connection over the cap closes
the oldest one that is not in the middle of a request (so ``/healthz`` is answered while a
thousand idle sockets are open); h11 refuses request heads over ``MAX_HEAD_BYTES``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any

from dupligoned.adapters.config import Config
from dupligoned.errors import ConfigError

log = logging.getLogger("dupligone.web")

HEADER_TIMEOUT_S = 10.0  # from connect (or the previous answer) to a complete request head
KEEP_ALIVE_S = 5
MAX_HEAD_BYTES = 64 * 1024
FD_RESERVE = 300  # files the daemon keeps for its index, queue, watcher and workers, plus one accept batch
# The listen backlog is also how many connections asyncio accepts in one go before any of them
# is counted (and, at the file limit, how many "out of system resource" errors it logs in one go).
BACKLOG = 128


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the soft limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return int(soft)


def connection_cap(file_limit: int) -> int:
    """Most connections served at once: the file limit less a reserve (at least 32)."""
    return max(32, min(4096, file_limit - FD_RESERVE))


def guarded_protocol(cap: int) -> type:
    """uvicorn's h11 protocol with a header timeout and a connection cap that evicts idle ones."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._opened = time.monotonic()
            self._head_timer: Any = None
            self._arm_head_timer()
            if len(self.connections) > cap:
                self._evict()

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timeout)

        def _head_timeout(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing() and not self._busy():
                self.transport.close()

        def _busy(self) -> bool:
            """In the middle of a request: its head is in and its answer is not finished."""
            return self.cycle is not None and not self.cycle.response_complete

        def _evict(self) -> None:
            idle = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and not c._busy()
                    and not c.transport.is_closing()]
            if idle:
                oldest = min(idle, key=lambda c: c._opened)
                oldest.transport.close()
                self.connections.discard(oldest)

        def handle_events(self) -> None:
            super().handle_events()
            if self._head_timer is not None and self.conn.their_state in (h11.SEND_BODY, h11.DONE):
                self._head_timer.cancel()
                self._head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._opened = time.monotonic()
                self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return GuardedH11Protocol


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(cfg: Config) -> None:
    """Raises ``ConfigError`` when the page would listen beyond loopback without a password."""
    if cfg.web.enabled and not is_loopback(cfg.web.host) and not cfg.web.password_hash:
        raise ConfigError([
            f"At 'web.host': the review page would listen on {cfg.web.host}, beyond this machine, without a "
            f"password; run `dupligone set-password --config {cfg.source or 'FILE'}` first, or set host = \"127.0.0.1\""
        ], cfg.source)


class WebServer:
    """The review page on ``[web] host:port``, served from a background thread."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self, timeout_s: float = 20.0) -> bool:
        """Start serving; returns whether the server is up. A port already in use is logged, not
        raised: the daemon goes on de-duplicating without its page."""
        import uvicorn

        from dupligoned.web.app import create_app

        check_listen(self.cfg)
        app = create_app(self.cfg)
        host, port = self.cfg.web.host, self.cfg.web.port
        try:  # uvicorn logs a bind failure and exits; find it first for a clear message
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
        except OSError as exc:
            self.error = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            log.error("review page not started: %s (set [web] port, or enabled = false)", self.error)
            return False
        cap = connection_cap(raise_file_limit())
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=3, server_header=False,
                                http=guarded_protocol(cap), timeout_keep_alive=KEEP_ALIVE_S,
                                h11_max_incomplete_event_size=MAX_HEAD_BYTES, backlog=BACKLOG)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dupligone-web", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.server.started and self.thread.is_alive():
            time.sleep(0.02)
        if not self.server.started:
            self.error = f"the review page did not start on {host}:{port}"
            log.error("%s", self.error)
            return False
        shown = f"[{host}]" if ":" in host else host
        log.info("review page on http://%s:%d/ (%s)", shown, port,
                 "password required" if self.cfg.web.password_hash else "no password: this machine only")
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout_s)
            self.thread = None
