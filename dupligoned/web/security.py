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
