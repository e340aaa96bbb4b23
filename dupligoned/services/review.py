"""What the review page shows and does, on the index (the web shell calls these).

* ``session_result(index, token)``: a session's groups with every photo's figures, the
  recommendation, the person's decision and the verdict that applies (the seed's getResult).
* ``set_decision(index, token, photo_id, action)``: ``keep``, ``delete``, ``split`` (not a
  duplicate: out of the group, remembered across re-clustering) or ``None`` (back to the
  recommendation). A split makes the session dirty, so it is clustered again.
* ``accept_all(index, token)``: the recommendations become decisions.
* ``confirm(index, token, root_for, dry_run=...)``: the photos whose verdict is ``delete`` move
  to trash (a dry run lists them and moves nothing); the session is marked reviewed.

Raises ``ReviewError`` for an unknown token or photo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dupligoned.adapters.index import Index
from dupligoned.errors import DupliGoneError
from dupligoned.services import sessions, trash

ACTIONS = ("keep", "delete", "split")
PHOTO_FIELDS = ("id", "path", "size_bytes", "width", "height", "format", "taken_at", "camera", "has_gps",
                "sharpness", "brightness", "contrast", "noise", "faces", "thumb", "content_hash", "phash_dhash")


class ReviewError(DupliGoneError):
    pass


def _session_id(index: Index, token: str) -> int:
    sid = index.scalar("SELECT id FROM sessions WHERE token = ?", (token,))
    if sid is None:
        raise ReviewError(f"no session with token {token!r}")
    return int(sid)


def session_result(index: Index, token: str) -> dict[str, Any]:
    """``{"session": {...state, counts}, "groups": [{"id", "photos": [{...figures, "recommended",
    "reason", "decision", "verdict", "protected"}]}], "to_free_bytes"}``."""
    sid = _session_id(index, token)
    (info,) = sessions.list_sessions(index, token)
    rows = index.query(
        "SELECT g.id AS group_id, m.recommended, m.reason, d.action AS decision, COALESCE(f.protected, 0) AS protected, "
        + ", ".join(f"p.{c}" for c in PHOTO_FIELDS) +
        " FROM groups g JOIN group_members m ON m.group_id = g.id JOIN photos p ON p.id = m.photo_id "
        "LEFT JOIN folders f ON f.id = p.folder_id "
        "LEFT JOIN decisions d ON d.session_id = g.session_id AND d.photo_id = p.id "
        "WHERE g.session_id = ? ORDER BY g.position, m.position", (sid,))
    groups: dict[int, dict[str, Any]] = {}
    to_free = 0
    for r in rows:
        p = dict(r)
        p["verdict"] = p["decision"] if p["decision"] in ("keep", "delete") else p["recommended"]
        if p["protected"] or p["decision"] == "split":
            # A photo split out as "not a duplicate" stays until the re-cluster moves it out.
            p["verdict"] = "keep"
        if p["verdict"] == "delete":
            to_free += int(p["size_bytes"])
        groups.setdefault(int(r["group_id"]), {"id": int(r["group_id"]), "photos": []})["photos"].append(p)
    return {"session": info, "groups": list(groups.values()), "to_free_bytes": to_free}


def set_decision(index: Index, token: str, photo_id: int, action: str | None, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    if action is not None and action not in ACTIONS:
        raise ReviewError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    sid = _session_id(index, token)
    if index.scalar("SELECT 1 FROM photos WHERE id = ?", (photo_id,)) is None:
        raise ReviewError(f"no photo {photo_id}")
    with index.tx() as conn:
        before = conn.execute("SELECT action FROM decisions WHERE session_id = ? AND photo_id = ?", (sid, photo_id)).fetchone()
        if action is None:
            conn.execute("DELETE FROM decisions WHERE session_id = ? AND photo_id = ?", (sid, photo_id))
        else:
            conn.execute("INSERT INTO decisions(session_id, photo_id, action, decided_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(session_id, photo_id) DO UPDATE SET action = excluded.action, decided_at = excluded.decided_at",
                         (sid, photo_id, action, now))
        if "split" in (action, before[0] if before else None):
            sessions.mark_dirty(conn, [sid])


def accept_all(index: Index, token: str, *, now: float | None = None) -> int:
    """Every recommendation without a decision becomes one. Returns how many."""
    now = time.time() if now is None else now
    sid = _session_id(index, token)
    with index.tx() as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO decisions(session_id, photo_id, action, decided_at) "
            "SELECT g.session_id, m.photo_id, m.recommended, ? FROM groups g JOIN group_members m ON m.group_id = g.id "
            "WHERE g.session_id = ?", (now, sid))
        return int(cur.rowcount)


def confirm(index: Index, token: str, root_for: Callable[[str], str], *, dry_run: bool,
            now: float | None = None) -> dict[str, Any]:
    """Move the session's ``delete`` verdicts to trash (or, with ``dry_run``, only list them).

    Returns ``{"dry_run", "moves": [{"photo_id", "path", "size_bytes", "trash_id", "trash_path"}],
    "freed_bytes"}``. A group never loses all its members: if every member would go, none does.
    """
    result = session_result(index, token)
    ids: list[int] = []
    for g in result["groups"]:
        doomed = [p["id"] for p in g["photos"] if p["verdict"] == "delete"]
        if len(doomed) < len(g["photos"]):
            ids += doomed
    if dry_run:
        moves = [m.__dict__ for m in trash.plan(index, ids)]
    else:
        sid = _session_id(index, token)
        moves = [m.__dict__ for m in trash.move_to_trash(index, ids, root_for, session_id=sid, now=now)]
        sessions.mark_reviewed(index, token, time.time() if now is None else now)
    return {"dry_run": dry_run, "moves": moves, "freed_bytes": sum(int(m["size_bytes"]) for m in moves)}
