"""MongoDB: the index mirror (``dupligone[mongo]``, imported only when configured).

Collections ``photos``, ``sessions``, ``groups``, ``decisions`` and ``trash`` hold one document
per index row, ``_id`` = the row's id (``"<session_id>:<photo_id>"`` for decisions), so every
write is an upsert by id or a delete by id, and replaying one twice changes nothing.

Indexes are the ones the mirror's readers need: photos by content hash, session, status and
path; groups by session and by member photo; decisions by session and photo; sessions by token;
trash by photo and state.

Raises ``MissingExtra`` when pymongo is missing and ``MirrorError`` for every failure of the
server (unreachable, timed out, refused). The URI (it may hold a password) is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from dupligoned.errors import MirrorError, MissingExtra

COLLECTIONS = ("photos", "sessions", "groups", "decisions", "trash")

INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    "photos": [([("content_hash", 1)], {}), ([("session_id", 1)], {}), ([("status", 1)], {}), ([("path", 1)], {})],
    "sessions": [([("token", 1)], {"unique": True})],
    "groups": [([("session_id", 1), ("position", 1)], {}), ([("members.photo_id", 1)], {})],
    "decisions": [([("session_id", 1)], {}), ([("photo_id", 1)], {})],
    "trash": [([("photo_id", 1)], {}), ([("state", 1)], {})],
}

logging.getLogger("pymongo").setLevel(logging.WARNING)


def _pymongo() -> Any:
    try:
        import pymongo
    except ImportError:
        raise MissingExtra("mongo", "the MongoDB mirror", "mongo") from None
    return pymongo


class MongoStore:
    """One database. Every method raises ``MirrorError`` when the server fails."""

    def __init__(self, uri: str, database: str, *, timeout_s: float = 5.0) -> None:
        pymongo = _pymongo()
        self._errors = (pymongo.errors.PyMongoError,)
        ms = int(timeout_s * 1000)
        try:
            self.client = pymongo.MongoClient(
                uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms * 6,
                retryWrites=True, appname="dupligone", tz_aware=False,
            )
        except pymongo.errors.ConfigurationError as exc:
            raise MirrorError(f"mongo: bad uri ({type(exc).__name__})") from None
        self.db = self.client[database]
        self._indexed = False

    def _clean(self, exc: BaseException) -> MirrorError:
        msg = str(exc).split(",")[0].splitlines()[0] if str(exc) else type(exc).__name__
        return MirrorError(f"mongo: {type(exc).__name__}: {msg[:300]}")

    def close(self) -> None:
        self.client.close()

    def ensure_indexes(self) -> None:
        if self._indexed:
            return
        try:
            for coll, specs in INDEXES.items():
                for keys, opts in specs:
                    self.db[coll].create_index(keys, **opts)
        except self._errors as exc:
            raise self._clean(exc) from None
        self._indexed = True

    def apply(self, collection: str, upserts: Iterable[Mapping[str, Any]], deletes: Iterable[Any]) -> int:
        """Replace (upsert) each document by ``_id`` and delete the ``deletes`` ids, in one
        unordered bulk write. Returns how many operations were sent."""
        pymongo = _pymongo()
        ops: list[Any] = [pymongo.ReplaceOne({"_id": d["_id"]}, dict(d), upsert=True) for d in upserts]
        dels = list(deletes)
        if dels:
            ops.append(pymongo.DeleteMany({"_id": {"$in": dels}}))
        if not ops:
            return 0
        self.ensure_indexes()
        try:
            self.db[collection].bulk_write(ops, ordered=False)
        except self._errors as exc:
            raise self._clean(exc) from None
        return len(ops)

    def ids(self, collection: str) -> set[Any]:
        """Every ``_id`` in ``collection``."""
        try:
            return {d["_id"] for d in self.db[collection].find({}, {"_id": 1})}
        except self._errors as exc:
            raise self._clean(exc) from None

    def find(self, collection: str, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            return list(self.db[collection].find(dict(query or {})))
        except self._errors as exc:
            raise self._clean(exc) from None

    def ping(self) -> None:
        try:
            self.client.admin.command("ping")
        except self._errors as exc:
            raise self._clean(exc) from None
