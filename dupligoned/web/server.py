"""Serving the review page: uvicorn in a thread of the daemon (or of ``dupligone web``).

``check_listen`` refuses, at start, to listen beyond loopback without a password: the review
page can delete photos, so on a LAN it must be behind a login.
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
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=3, server_header=False)
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
