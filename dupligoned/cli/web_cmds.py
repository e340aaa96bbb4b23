"""The review page's subcommands of ``dupligone``: set-password, web."""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from typing import Any

from dupligoned.errors import UsageError

CONFIG_HELP = "config file (default: $DUPLIGONE_CONFIG, /etc/dupligone/dupligone.toml, ~/.config/dupligone/dupligone.toml)"
MIN_PASSWORD_CHARS = 8


def set_password_in(text: str, hashed: str) -> str:
    """The config text with ``[web] password_hash`` set (the line replaced, or added to ``[web]``,
    or a ``[web]`` table appended). Comments and every other line stay as they are."""
    line = f'password_hash = "{hashed}"'
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"^\s*\[web\]\s*(#.*)?$", ln)), None)
    if start is None:
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + f"[web]\n{line}\n"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    for i in range(start + 1, end):
        if re.match(r"^\s*password_hash\s*=", lines[i]):
            lines[i] = line
            break
    else:
        lines.insert(start + 1, line)
    return "\n".join(lines) + "\n"


def cmd_set_password(args: argparse.Namespace) -> int:
    from dupligoned.adapters.config import find_config, load_config
    from dupligoned.web.security import LoginStore, hash_password

    path = find_config(args.config)
    cfg = load_config(path)  # refuse to edit a config that does not load
    if sys.stdin.isatty():
        pw = getpass.getpass("New password for the review page: ")
        if getpass.getpass("Again: ") != pw:
            raise UsageError("the two passwords differ")
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if len(pw) < MIN_PASSWORD_CHARS:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    text = open(path, encoding="utf-8").read()
    new = set_password_in(text, hash_password(pw))
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)
    load_config(path)
    # Every login made with the old password ends now; a running daemon notices the store
    # changed and reads the new hash from the config at its next request.
    LoginStore(cfg.state_dir).end_all()
    print(f"password set in {path}; every login has ended (a running daemon uses the new password at once)")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the review page only, on an index the daemon keeps (for a second machine, or tests)."""
    import signal
    import threading

    from dupligoned.adapters.config import find_config, load_config
    from dupligoned.daemon.main import setup_logging
    from dupligoned.web.server import WebServer

    cfg: Any = load_config(find_config(args.config))
    setup_logging(cfg.log_level)
    if not os.path.exists(cfg.index_path):
        raise UsageError(f"no index at {cfg.index_path}; start the daemon first")
    from dupligoned.cli.daemon_cmds import _index

    _index(cfg).close()  # a damaged index: one line and exit 2, not a 500 on every page
    srv = WebServer(cfg)
    if not srv.start():
        raise UsageError(srv.error or "the review page did not start")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    srv.stop()
    return 0


def add_web_commands(sub: Any) -> None:
    sp = sub.add_parser("set-password", help="set the review page's password (read from stdin); the config keeps a hash")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.set_defaults(func=cmd_set_password)

    sp = sub.add_parser("web", help="serve only the review page, on the daemon's index")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.set_defaults(func=cmd_web)
