"""Azure Blob Storage: the photo mirror (``dupligone[azure]``, imported only when configured).

Blobs are named by content hash (``photos/<hash>``, ``thumbs/<hash>.jpg``), so a re-run or a
byte-identical copy costs one HEAD request, and a move or rename costs nothing. Uploads are
idempotent (an existing blob of the right size is left alone) and resumable: a large file goes
up in 4 MiB blocks with ids derived from their position, and a retry stages only the blocks the
service does not hold yet. The bytes sent are hashed on the way and must equal the content hash
the name promises, else nothing is committed (the file changed since its analysis).

Credentials come from ``azure.connection_string`` or the file ``azure.connection_string_file``
names; they are never logged, and error messages are stripped of the account key.

Raises ``MissingExtra`` when the package is missing and ``MirrorError`` for every failure of
the service (unreachable, refused).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dupligoned.errors import ConfigError, MirrorError, MissingExtra

BLOCK_BYTES = 4 * 1024 * 1024
PHOTO_PREFIX = "photos/"
THUMB_PREFIX = "thumbs/"
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heif",
                 "HEIC": "image/heic", "TIFF": "image/tiff", "GIF": "image/gif", "BMP": "image/bmp"}

# The SDK logs request headers at INFO; keep it quiet whatever the daemon's level.
logging.getLogger("azure").setLevel(logging.WARNING)


def _sdk() -> Any:
    try:
        import azure.storage.blob as blob
    except ImportError:
        raise MissingExtra("azure", "the Azure Blob mirror", "azure") from None
    return blob


def photo_blob(content_hash: str) -> str:
    return f"{PHOTO_PREFIX}{content_hash}"


def thumb_blob(content_hash: str) -> str:
    return f"{THUMB_PREFIX}{content_hash}.jpg"


def hash_of_blob(name: str) -> str | None:
    """The content hash a blob name stands for (``None`` for a name DupliGone does not use)."""
    if name.startswith(PHOTO_PREFIX):
        h = name[len(PHOTO_PREFIX):]
    elif name.startswith(THUMB_PREFIX) and name.endswith(".jpg"):
        h = name[len(THUMB_PREFIX):-4]
    else:
        return None
    return h if h and all(c in "0123456789abcdef" for c in h) else None


def read_connection_string(connection_string: str | None, connection_string_file: str | None,
                           connection_string_env: str | None = None) -> str:
    """The connection string from the config, the file it names, or the environment variable
    it names. Raises ``ConfigError``."""
    if connection_string:
        return connection_string.strip()
    if connection_string_env:
        value = os.environ.get(connection_string_env, "").strip()
        if not value:
            raise ConfigError([f"At 'azure.connection_string_env': the environment variable "
                               f"{connection_string_env} is not set or empty"])
        return value
    if connection_string_file:
        try:
            with open(connection_string_file, encoding="utf-8") as f:
                text = f.read().strip()
        except OSError as exc:
            raise ConfigError([f"At 'azure.connection_string_file': cannot read {connection_string_file}: "
                               f"{exc.strerror or exc}"]) from None
        if not text:
            raise ConfigError([f"At 'azure.connection_string_file': {connection_string_file} is empty"])
        return text
    raise ConfigError(["At 'azure.connection_string': set it, 'azure.connection_string_file' or "
                       "'azure.connection_string_env'"])


@dataclass(frozen=True)
class UploadResult:
    uploaded: bool  # False: it was there already
    size_bytes: int


class BlobStore:
    """One container. Every method raises ``MirrorError`` when the service fails."""

    def __init__(self, connection_string: str, container: str, *, timeout_s: float = 10.0) -> None:
        blob = _sdk()
        self._blob = blob
        self._secret = connection_string
        self._key = ""
        for part in connection_string.split(";"):
            if part.lower().startswith("accountkey="):
                self._key = part.split("=", 1)[1]
        try:
            self.service = blob.BlobServiceClient.from_connection_string(
                connection_string, connection_timeout=min(timeout_s, 5.0), read_timeout=timeout_s * 6,
                # The outbox retries with its own capped backoff; the SDK's default waits 15 s+.
                retry_policy=blob.LinearRetry(backoff=0.5, random_jitter_range=0, retry_total=1),
            )
        except ValueError as exc:
            raise ConfigError([f"At 'azure.connection_string': not a valid connection string ({type(exc).__name__})"]) from None
        self.container_name = container
        self.container = self.service.get_container_client(container)
        self._ready = False

    # ------------------------------------------------------------ errors

    def _clean(self, exc: BaseException) -> MirrorError:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for secret in (self._secret, self._key):
            if secret:
                msg = msg.replace(secret, "***")
        return MirrorError(f"azure: {type(exc).__name__}: {msg[:300]}")

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return fn(*args, **kw)
        except AzureError as exc:
            raise self._clean(exc) from None
        except OSError as exc:
            raise self._clean(exc) from None

    def ensure_container(self) -> None:
        """Create the container once (an existing one is fine)."""
        if self._ready:
            return
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            self.container.create_container()
        except ResourceExistsError:
            pass
        except (AzureError, OSError) as exc:
            raise self._clean(exc) from None
        self._ready = True

    # ------------------------------------------------------------ reading

    def size_of(self, name: str) -> int | None:
        """The size of blob ``name``, or ``None`` when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self.container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - every other failure is the service's
            raise self._clean(exc) from None
        return int(props.size)

    def names(self, prefix: str = "") -> Iterator[str]:
        """Every blob name under ``prefix``."""
        self.ensure_container()
        it = self._call(self.container.list_blob_names, name_starts_with=prefix or None)
        try:
            yield from it
        except Exception as exc:  # noqa: BLE001
            raise self._clean(exc) from None

    def download(self, name: str) -> bytes:
        return bytes(self._call(lambda: self.container.get_blob_client(name).download_blob().readall()))

    # ------------------------------------------------------------ writing

    def put_file(self, name: str, path: str, content_hash: str, *, content_type: str = "application/octet-stream",
                 block_bytes: int = BLOCK_BYTES) -> UploadResult:
        """Upload the file at ``path`` as ``name`` unless a blob of its size is there already.

        Raises ``MirrorError`` (service) and ``ValueError`` when the file's bytes no longer hash
        to ``content_hash`` (it changed since its analysis); ``OSError`` when it cannot be read.
        """
        self.ensure_container()
        size = os.path.getsize(path)
        have = self.size_of(name)
        if have == size:
            return UploadResult(False, size)
        blob = self._blob
        client = self.container.get_blob_client(name)
        settings = blob.ContentSettings(content_type=content_type)
        meta = {"content_hash": content_hash}
        if size <= block_bytes:
            with open(path, "rb") as f:
                data = f.read()
            if hashlib.blake2b(data, digest_size=16).hexdigest() != content_hash:
                raise ValueError(f"{path} changed since it was analysed")
            self._call(client.upload_blob, data, overwrite=True, content_settings=settings, metadata=meta)
            return UploadResult(True, len(data))
        # Resumable: blocks staged by an earlier, interrupted attempt are not sent again.
        staged: set[str] = set()
        try:
            _committed, uncommitted = client.get_block_list("uncommitted")
            staged = {b.id for b in uncommitted}
        except Exception:  # noqa: BLE001, S110 - no blob yet: nothing staged
            pass
        ids = []
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            i = 0
            while True:
                chunk = f.read(block_bytes)
                if not chunk:
                    break
                h.update(chunk)
                bid = f"{content_hash[:16]}-{i:06d}"
                if bid not in staged:
                    self._call(client.stage_block, bid, chunk, length=len(chunk))
                ids.append(bid)
                i += 1
        if h.hexdigest() != content_hash:
            raise ValueError(f"{path} changed since it was analysed")
        self._call(client.commit_block_list, [blob.BlobBlock(block_id=b) for b in ids],
                   content_settings=settings, metadata=meta)
        return UploadResult(True, size)

    def put_bytes(self, name: str, data: bytes, *, content_type: str = "image/jpeg") -> UploadResult:
        self.ensure_container()
        if self.size_of(name) == len(data):
            return UploadResult(False, len(data))
        self._call(self.container.get_blob_client(name).upload_blob, data, overwrite=True,
                   content_settings=self._blob.ContentSettings(content_type=content_type))
        return UploadResult(True, len(data))

    def delete(self, name: str) -> bool:
        """Delete blob ``name``; False when it was not there."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.get_blob_client(name).delete_blob()
        except ResourceNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise self._clean(exc) from None
        return True

    # ------------------------------------------------------------ links

    def sas_url(self, name: str, ttl_s: float, *, now: datetime | None = None) -> str:
        """A read-only link to blob ``name`` that stops working after ``ttl_s`` seconds.
        Pure computation (no request): it is signed with the account key."""
        blob = self._blob
        now = now or datetime.now(UTC)
        sas = blob.generate_blob_sas(
            account_name=self.service.account_name, container_name=self.container_name, blob_name=name,
            account_key=self._key, permission=blob.BlobSasPermissions(read=True),
            expiry=now + timedelta(seconds=ttl_s),
        )
        return f"{self.container.get_blob_client(name).url}?{sas}"
