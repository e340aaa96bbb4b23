"""Passwords, signed values and the web secret.

* Passwords are stored as scrypt hashes (``scrypt$n$r$p$salt$hash``, base64); the config holds
  only that (``[web] password_hash``, written by ``dupligone set-password``).
* ``Signer`` makes HMAC-SHA256 signatures with the web secret: the login cookie and the
  full-size preview links (``/preview/<id>?exp=<unix time>&sig=<hmac>``, the local form of a SAS
  URL) are signed, and both expire.
* The secret is 32 random bytes in ``<state_dir>/web-secret`` (mode 0600), made at first start.

Raises nothing on bad input: checks return ``False`` / ``None``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str) -> str:
    """An scrypt hash of ``password`` with a fresh salt."""
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                        maxmem=SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(dk)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        dk = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                            maxmem=SCRYPT_MAXMEM, dklen=len(_unb64(want)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk, _unb64(want))


def load_secret(state_dir: str | Path) -> bytes:
    """The web secret, made (0600) at first use."""
    path = Path(state_dir) / "web-secret"
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".web-secret.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # another process may have made it first: theirs wins
    except FileExistsError:
        pass
    os.unlink(tmp)
    return path.read_bytes()


class Signer:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def sign(self, message: str) -> str:
        return hmac.new(self.secret, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def check(self, message: str, sig: str) -> bool:
        return hmac.compare_digest(self.sign(message), sig)

    # ---- tokens: base64(json).signature, with an expiry

    def token(self, purpose: str, payload: dict[str, Any], ttl_s: float, now: float | None = None) -> str:
        now = time.time() if now is None else now
        body = _b64(json.dumps({**payload, "exp": int(now + ttl_s)}, separators=(",", ":")).encode())
        return f"{body}.{self.sign(purpose + ':' + body)}"

    def read_token(self, purpose: str, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The payload of a valid, unexpired token; else None."""
        now = time.time() if now is None else now
        try:
            body, sig = token.split(".", 1)
            if not self.check(purpose + ":" + body, sig):
                return None
            data: dict[str, Any] = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        return data if float(data.get("exp", 0)) > now else None

    # ---- preview links

    def preview_query(self, photo_id: int, ttl_s: float, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + ttl_s)
        return f"exp={exp}&sig={self.sign(f'preview:{photo_id}:{exp}')}"

    def preview_ok(self, photo_id: int, exp: int, sig: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return exp > now and self.check(f"preview:{photo_id}:{exp}", sig)


# ---------------------------------------------------------------- logins kept on the server

LOGINS_FILE = "web-logins.json"
MAX_LOGINS = 200  # devices logged in at once; the oldest login ends first


class LoginStore:
    """The logins that are valid now, kept in ``<state_dir>/web-logins.json`` (mode 0600).

    A login cookie names a login id; the cookie is only good while its id is here. Logging out
    removes the id at once; ``dupligone set-password`` (another process) empties the file, which
    ends every login at once and makes the daemon read the new password hash. The file is read
    again whenever it changes (one ``stat`` per check).
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / LOGINS_FILE
        self._seen: tuple[int, int, int] | None = None
        self._ids: dict[str, float] = {}
        self.generation = 0

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)  # every save is a new file (a new inode)

    def _load(self) -> None:
        stamp = self._stamp()
        if stamp == self._seen and stamp is not None:
            return
        data: dict[str, Any] = {}
        if stamp is not None:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                data = {}
        ids = data.get("ids") if isinstance(data, dict) else None
        self._ids = {str(k): float(v) for k, v in ids.items()} if isinstance(ids, dict) else {}
        self.generation = int(data.get("generation", 0)) if isinstance(data, dict) else 0
        self._seen = stamp

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{LOGINS_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"generation": self.generation, "ids": self._ids}, fh)
        os.replace(tmp, self.path)
        self._seen = self._stamp()

    def changed(self) -> int:
        """The generation (bumped by ``end_all``), after reading the file again if it changed."""
        self._load()
        return self.generation

    def valid(self, lid: str, now: float | None = None) -> bool:
        self._load()
        exp = self._ids.get(lid)
        return exp is not None and exp > (time.time() if now is None else now)

    def add(self, ttl_s: float, now: float | None = None) -> str:
        """A new login id, valid for ``ttl_s``."""
        now = time.time() if now is None else now
        self._load()
        self._ids = {k: v for k, v in self._ids.items() if v > now}
        while len(self._ids) >= MAX_LOGINS:
            del self._ids[min(self._ids, key=self._ids.__getitem__)]
        lid = secrets.token_urlsafe(12)
        self._ids[lid] = now + ttl_s
        self._save()
        return lid

    def end(self, lid: str) -> None:
        self._load()
        if self._ids.pop(lid, None) is not None:
            self._save()

    def end_all(self) -> None:
        self._load()
        self._ids = {}
        self.generation += 1
        self._save()


# ---------------------------------------------------------------- login throttling

class LoginThrottle:
    """Brakes on password guessing, per client and for everyone.

    * One password check at a time per client, ``max_checks`` at a time in all: a burst of
      parallel guesses is answered ``429`` at once, without running scrypt, and each guess
      sent while the client's previous one is being checked counts as a wrong password.
    * After ``free`` wrong passwords a client waits 1 s, then 2, 4, ... (at most ``max_wait_s``)
      before its next attempt; every attempt in that time is ``429``, the right password too.
    * Wrong passwords from all clients together decay by one per ``global_period_s``; beyond
      ``global_free`` everyone waits the same growing delay (a guesser with many addresses).

    A right password clears the client's count. Times are ``time.monotonic`` seconds.
    """

    def __init__(self, *, free: int = 5, max_wait_s: float = 300.0, max_checks: int = 2,
                 global_free: int = 30, global_period_s: float = 10.0) -> None:
        self.free, self.max_wait_s, self.max_checks = free, max_wait_s, max_checks
        self.global_free, self.global_period_s = global_free, global_period_s
        self.failures: dict[str, tuple[int, float]] = {}  # client -> (count, wait until)
        self.in_flight: set[str] = set()
        self.global_failures = 0.0
        self.global_at = time.monotonic()
        self.global_until = 0.0

    def _decay(self, now: float) -> None:
        self.global_failures = max(0.0, self.global_failures - (now - self.global_at) / self.global_period_s)
        self.global_at = now

    def _wait(self, over: float) -> float:
        return float(min(self.max_wait_s, 2.0 ** max(0.0, over - 1)))

    def _strike(self, client: str, now: float) -> None:
        n = self.failures.get(client, (0, 0.0))[0] + 1
        self.failures[client] = (n, now + self._wait(n - self.free) if n > self.free else 0.0)

    def begin(self, client: str, now: float | None = None) -> float | None:
        """None: go ahead and check the password (call ``end`` after). Else the seconds to wait."""
        now = time.monotonic() if now is None else now
        self._decay(now)
        if now < self.global_until:
            return self.global_until - now
        _, until = self.failures.get(client, (0, 0.0))
        if now < until:
            return until - now
        if client in self.in_flight:
            # Guesses sent in parallel count as wrong ones: a burst earns its wait at once.
            self._strike(client, now)
            return 1.0
        if len(self.in_flight) >= self.max_checks:
            return 1.0
        self.in_flight.add(client)
        if len(self.failures) > 10_000:  # forget the oldest clients first
            for k in sorted(self.failures, key=lambda c: self.failures[c][1])[:5_000]:
                del self.failures[k]
        return None

    def end(self, client: str, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.in_flight.discard(client)
        if ok:
            self.failures.pop(client, None)
            return
        self._strike(client, now)
        self._decay(now)
        self.global_failures += 1
        if self.global_failures > self.global_free:
            self.global_until = now + self._wait(self.global_failures - self.global_free)
