"""Mirrors: make Azure Blob and MongoDB equal to the local index, never in the way.

The index is the truth. Every change to it leaves a row in the outbox (``adapters/outbox.py``,
written by triggers in the same transaction). ``drain_once`` takes the oldest rows of one
mirror, reads the *current* local state of each entity they name, and makes the mirror match:
upsert or delete in MongoDB; upload or delete blobs in Azure. Then it acknowledges the rows,
unless they changed again meanwhile. A mirror that is down raises ``MirrorError`` and its rows
stay where they are; the queue task retries with backoff (``daemon/mirror_tasks.py``). Because
each push is "make it equal to now", replaying it is harmless and the mirror converges.

``sweep`` compares a whole mirror with the index (first start, ``dupligone mirror resync``,
cleanup's orphan check): documents or blobs the index no longer has are deleted, missing ones
written.

Azure holds ``photos/<hash>`` and ``thumbs/<hash>.jpg`` for every content hash a live photo or
a file in the trash has; a hash nothing refers to any more (purged, vanished, re-analysed to a
new hash) is deleted.

``preview_url`` gives the review page a signed, read-only, expiring link to a mirrored photo.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from dupligoned.adapters import outbox
from dupligoned.adapters.config import Config
from dupligoned.adapters.index import Index
from dupligoned.adapters.thumbs import ThumbStore
from dupligoned.errors import MirrorError

log = logging.getLogger("dupligone.mirror")

BATCH = 500
AZURE_THREADS = 4


def configured(cfg: Config) -> list[str]:
    """Names of the mirrors the config turns on (imports nothing)."""
    return [n for n in outbox.MIRRORS if getattr(cfg, n) is not None]


def enable(index: Index, cfg: Config) -> list[str]:
    """Record which mirrors are on (the outbox triggers only write for those), re-create
    triggers a table rebuild dropped. Returns mirrors newly enabled (they get a full sweep)."""
    with index.tx() as conn:
        outbox.sync_triggers(conn)
        return outbox.set_enabled(conn, configured(cfg))


def mirror_state(index: Index, now: float | None = None) -> list[dict[str, Any]]:
    """Lag and last error of each enabled mirror (``outbox.state``)."""
    return outbox.state(index.conn, now)


# ---------------------------------------------------------------- the mirrors

class Sync(Protocol):
    name: str

    def push(self, index: Index, items: list[outbox.Item]) -> None: ...

    def sweep(self, index: Index) -> dict[str, int]: ...


def _rows_by_id(index: Index, table: str, ids: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for k in range(0, len(ids), 500):
        chunk = ids[k:k + 500]
        q = ",".join("?" * len(chunk))
        for r in index.query(f"SELECT * FROM {table} WHERE id IN ({q})", tuple(chunk)):
            out[int(r["id"])] = dict(r)
    return out


def _doc(row: dict[str, Any], _id: Any) -> dict[str, Any]:
    d = {k: v for k, v in row.items() if k != "id"}
    d["_id"] = _id
    return d


class MongoSync:
    """photos, sessions, groups (with their members), decisions and trash as documents."""

    name = "mongo"
    ENTITY_COLLECTION = {"photo": "photos", "session": "sessions", "group": "groups", "decision": "decisions",
                         "trash": "trash"}

    def __init__(self, store: Any) -> None:
        self.store = store

    # Documents of the given keys that exist locally; the other keys were deleted.
    def _docs(self, index: Index, entity: str, keys: list[str]) -> tuple[list[dict[str, Any]], list[Any]]:
        if entity == "decision":
            docs, gone = [], []
            for key in keys:
                sid, pid = (int(x) for x in key.split(":"))
                r = index.one("SELECT * FROM decisions WHERE session_id = ? AND photo_id = ?", (sid, pid))
                if r is None:
                    gone.append(key)
                else:
                    docs.append({**dict(r), "_id": key})
            return docs, gone
        table = {"photo": "photos", "session": "sessions", "group": "groups", "trash": "trash"}[entity]
        ids = [int(k) for k in keys]
        rows = _rows_by_id(index, table, ids)
        if entity == "group" and rows:
            members: dict[int, list[dict[str, Any]]] = defaultdict(list)
            q = ",".join("?" * len(rows))
            for m in index.query(f"SELECT group_id, photo_id, position, recommended, reason FROM group_members "
                                 f"WHERE group_id IN ({q}) ORDER BY group_id, position", tuple(rows)):
                members[int(m["group_id"])].append({k: m[k] for k in ("photo_id", "position", "recommended", "reason")})
            for gid, row in rows.items():
                row["members"] = members.get(gid, [])
        return [_doc(r, i) for i, r in rows.items()], [i for i in ids if i not in rows]

    def push(self, index: Index, items: list[outbox.Item]) -> None:
        by_entity: dict[str, list[str]] = defaultdict(list)
        for it in items:
            if it.entity == outbox.SWEEP:
                self.sweep(index)
            elif it.entity in self.ENTITY_COLLECTION:
                by_entity[it.entity].append(it.key)
        for entity, keys in by_entity.items():
            docs, gone = self._docs(index, entity, keys)
            self.store.apply(self.ENTITY_COLLECTION[entity], docs, gone)

    def _all_keys(self, index: Index, entity: str) -> list[str]:
        if entity == "decision":
            return [f"{r[0]}:{r[1]}" for r in index.query("SELECT session_id, photo_id FROM decisions")]
        table = {"photo": "photos", "session": "sessions", "group": "groups", "trash": "trash"}[entity]
        return [str(r[0]) for r in index.query(f"SELECT id FROM {table}")]

    def sweep(self, index: Index) -> dict[str, int]:
        out = {"written": 0, "deleted": 0}
        self.store.ensure_indexes()
        for entity, coll in self.ENTITY_COLLECTION.items():
            keys = self._all_keys(index, entity)
            local: set[Any] = {k if entity == "decision" else int(k) for k in keys}
            for k in range(0, len(keys), 1000):
                docs, _gone = self._docs(index, entity, keys[k:k + 1000])
                self.store.apply(coll, docs, [])
                out["written"] += len(docs)
            extra = [i for i in self.store.ids(coll) if i not in local]
            for k in range(0, len(extra), 1000):
                self.store.apply(coll, [], extra[k:k + 1000])
            out["deleted"] += len(extra)
        return out


@dataclass
class _Want:
    sources: list[tuple[str, str | None]] = field(default_factory=list)  # (path, format)


class AzureSync:
    """Originals and thumbnails of every content hash a live or trashed photo has."""

    name = "azure"

    def __init__(self, store: Any, thumbs: ThumbStore, *, threads: int = AZURE_THREADS) -> None:
        self.store = store
        self.thumbs = thumbs
        self.threads = threads

    def _wanted(self, index: Index, h: str) -> _Want | None:
        srcs = [(r[0], r[1]) for r in index.query(
            "SELECT path, format FROM photos WHERE content_hash = ? AND status != 'gone' "
            "ORDER BY status = 'ok' DESC, id", (h,))]
        srcs += [(r[0], None) for r in index.query(
            "SELECT trash_path, NULL FROM trash WHERE content_hash = ? AND state IN ('moving', 'trashed')", (h,))]
        return _Want(srcs) if srcs else None

    def _sync_one(self, h: str, want: _Want | None) -> tuple[str, int | None, bool] | str | None:
        """Make the blobs of ``h`` match; returns (hash, size, thumb) when present, None when
        removed, ``"skip"`` when no copy could be read now (its next change brings it back)."""
        from dupligoned.adapters.azure_blob import CONTENT_TYPES, photo_blob, thumb_blob

        if want is None:
            self.store.delete(photo_blob(h))
            self.store.delete(thumb_blob(h))
            return None
        size: int | None = None
        for path, fmt in want.sources:
            try:
                res = self.store.put_file(photo_blob(h), path, h,
                                          content_type=CONTENT_TYPES.get(str(fmt).upper(), "application/octet-stream"))
            except (OSError, ValueError):
                continue  # moved, changed or being trashed right now: try the next copy
            size = res.size_bytes
            break
        has_thumb = False
        try:
            data = self.thumbs.path(self.thumbs.relpath(h)).read_bytes()
        except (OSError, ValueError):
            data = b""
        if data:
            self.store.put_bytes(thumb_blob(h), data)
            has_thumb = True
        return (h, size, has_thumb) if size is not None else "skip"

    def _apply(self, index: Index, todo: dict[str, _Want | None]) -> None:
        results: list[tuple[str, tuple[str, int | None, bool] | str | None]] = []
        if len(todo) <= 1 or self.threads <= 1:
            results = [(h, self._sync_one(h, w)) for h, w in todo.items()]
        else:
            with ThreadPoolExecutor(self.threads, thread_name_prefix="azure-put") as pool:
                futs = {h: pool.submit(self._sync_one, h, w) for h, w in todo.items()}
                for h, f in futs.items():
                    results.append((h, f.result()))  # re-raises MirrorError
        now = time.time()
        with index.tx() as conn:
            for h, res in results:
                if res is None:
                    outbox.unmark_blob(conn, h)
                elif not isinstance(res, str):
                    outbox.mark_blob(conn, h, res[1], res[2], now)

    def push(self, index: Index, items: list[outbox.Item]) -> None:
        if any(it.entity == outbox.SWEEP for it in items):
            self.sweep(index)
        hashes = [it.key for it in items if it.entity == "blob"]
        self.store.ensure_container()
        self._apply(index, {h: self._wanted(index, h) for h in hashes})

    def sweep(self, index: Index) -> dict[str, int]:
        """Delete orphan blobs (no photo refers to their hash), upload what is missing."""
        from dupligoned.adapters.azure_blob import hash_of_blob, photo_blob, thumb_blob

        wanted = {r[0] for r in index.query(
            "SELECT content_hash FROM photos WHERE status != 'gone' AND content_hash IS NOT NULL "
            "UNION SELECT content_hash FROM trash WHERE state IN ('moving', 'trashed') AND content_hash IS NOT NULL")}
        present: set[str] = set()
        orphans = []
        for name in self.store.names():
            h = hash_of_blob(name)
            if h is None:
                continue  # not ours: leave it
            if h in wanted:
                present.add(name)
            else:
                orphans.append(name)
        for name in orphans:
            self.store.delete(name)
            h = hash_of_blob(name)
            if h is not None:
                with index.tx() as conn:
                    outbox.unmark_blob(conn, h)
        missing = {h for h in wanted if photo_blob(h) not in present or
                   (thumb_blob(h) not in present and self.thumbs.path(self.thumbs.relpath(h)).exists())}
        self._apply(index, {h: self._wanted(index, h) for h in sorted(missing)})
        if orphans:
            log.info("azure: removed %d orphan blobs", len(orphans))
        return {"deleted": len(orphans), "written": len(missing)}


# ---------------------------------------------------------------- building and draining

def make_sync(cfg: Config, name: str) -> Sync:
    """The mirror ``name`` for ``cfg``. Raises ``MissingExtra`` when its package is missing."""
    if name == "azure":
        assert cfg.azure is not None
        from dupligoned.adapters.azure_blob import BlobStore, read_connection_string

        cs = read_connection_string(cfg.azure.connection_string, cfg.azure.connection_string_file,
                                cfg.azure.connection_string_env)
        return AzureSync(BlobStore(cs, cfg.azure.container), ThumbStore(cfg.thumbs_path))
    if name == "mongo":
        assert cfg.mongo is not None
        from dupligoned.adapters.mongo import MongoStore

        return MongoSync(MongoStore(cfg.mongo.uri, cfg.mongo.database))
    raise ValueError(f"no mirror called {name!r}")


def check_extras(cfg: Config) -> None:
    """Fail at start, naming the extra, when a configured mirror's package is missing."""
    if cfg.azure is not None:
        from dupligoned.adapters.azure_blob import _sdk

        _sdk()
    if cfg.mongo is not None:
        from dupligoned.adapters.mongo import _pymongo

        _pymongo()


def drain_once(index: Index, sync: Sync, batch: int = BATCH) -> int:
    """Push the oldest pending changes of one mirror and acknowledge them. Returns how many
    were pushed (0: nothing pending). Raises ``MirrorError``, recording it for ``status``."""
    items = outbox.take(index.conn, sync.name, batch)
    if not items:
        return 0
    try:
        sync.push(index, items)
    except MirrorError as exc:
        with index.tx() as conn:
            outbox.record_failure(conn, sync.name, str(exc))
        raise
    with index.tx() as conn:
        outbox.ack(conn, sync.name, items)
    return len(items)


def drain(index: Index, sync: Sync, *, stop: threading.Event | None = None, batch: int = BATCH,
          pause: Callable[[], bool] | None = None) -> int:
    """Drain until the outbox of ``sync`` is empty, ``stop`` is set, or ``pause()`` says to
    give way (between batches). Raises ``MirrorError``."""
    total = 0
    while (stop is None or not stop.is_set()) and not (pause is not None and pause()):
        n = drain_once(index, sync, batch)
        if n == 0:
            break
        total += n
    return total


def resync(index: Index, cfg: Config, names: Iterable[str]) -> dict[str, dict[str, int]]:
    """Rebuild mirrors from the local index, now (``dupligone mirror resync``)."""
    out = {}
    for name in names:
        out[name] = make_sync(cfg, name).sweep(index)
    return out


# ---------------------------------------------------------------- previews

_stores: dict[tuple[str, str], Any] = {}
_stores_lock = threading.Lock()


def _blob_store(cfg: Config) -> Any:
    from dupligoned.adapters.azure_blob import BlobStore, read_connection_string

    assert cfg.azure is not None
    cs = read_connection_string(cfg.azure.connection_string, cfg.azure.connection_string_file,
                                cfg.azure.connection_string_env)
    key = (cs, cfg.azure.container)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = BlobStore(cs, cfg.azure.container)
        return _stores[key]


def preview_url(index: Index, cfg: Config, photo_id: int, *, thumb: bool = False,
                ttl_s: float | None = None) -> str | None:
    """A read-only link to photo ``photo_id`` (or its thumbnail) in Azure Blob, valid for
    ``ttl_s`` seconds (default ``web.preview_ttl_s``); ``None`` when the Azure mirror is off or
    does not hold that photo yet (serve it locally then). No network request is made."""
    if cfg.azure is None:
        return None
    row = index.one("SELECT p.content_hash, b.thumb FROM photos p JOIN azure_blobs b ON b.content_hash = p.content_hash "
                    "WHERE p.id = ?", (photo_id,))
    if row is None or (thumb and not row["thumb"]):
        return None
    from dupligoned.adapters.azure_blob import photo_blob, thumb_blob

    h = str(row["content_hash"])
    name = thumb_blob(h) if thumb else photo_blob(h)
    return str(_blob_store(cfg).sas_url(name, ttl_s if ttl_s is not None else cfg.web.preview_ttl_s))


def blob_origin(cfg: Config) -> str:
    """``scheme://host[:port]`` of the configured Blob service (for the page's CSP)."""
    from urllib.parse import urlsplit

    u = urlsplit(str(_blob_store(cfg).container.url))
    return f"{u.scheme}://{u.netloc}"


def lower_thread_priority(niceness: int = 10) -> None:
    """Mirror pushes yield the CPU to analysis (Linux: per-thread nice; a no-op elsewhere)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError):
        pass
