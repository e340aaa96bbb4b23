"""Read-only views of the index for ``dupligone status`` (``dupligone groups`` is ``review.groups_json``)."""

from __future__ import annotations

from typing import Any

from dupligoned.adapters import outbox
from dupligoned.adapters.index import Index
from dupligoned.services import sessions


def status(index: Index) -> dict[str, Any]:
    """``{"photos", "queued", "errors", "gone", "sessions": [{"token", "photos", "groups", "state", ...}],
    "recent_errors": [{"path", "reason"}], "mirrors": [{"name", "pending", "lag_s", "last_error", ...}]}``;
    photos counts analysed photos (``ok``); mirrors lists the enabled mirrors (``outbox.state``)."""
    counts = {r[0]: int(r[1]) for r in index.query("SELECT status, COUNT(*) FROM photos GROUP BY status")}
    sess = []
    for s in sessions.list_sessions(index):
        sess.append({
            "token": s["token"], "kind": s["kind"], "photos": int(s["photos"]), "queued": int(s["queued"]),
            "errors": int(s["errors"]), "groups": int(s["groups"]), "state": s["state"],
            "created_at": s["created_at"], "closed_at": s["closed_at"], "clustered_at": s["clustered_at"],
        })
    errors = [{"path": r[0], "reason": r[1]} for r in index.query(
        "SELECT path, error FROM photos WHERE status = 'error' ORDER BY analysed_at DESC, id DESC LIMIT 100")]
    return {
        "photos": counts.get("ok", 0),
        "queued": counts.get("queued", 0),
        "errors": counts.get("error", 0),
        "gone": counts.get("gone", 0),
        "trash": int(index.scalar("SELECT COUNT(*) FROM trash WHERE restored_at IS NULL AND purged_at IS NULL") or 0),
        "sessions": sess,
        "waiting_for_review": sum(1 for s in sess if s["state"] == "clustered" and s["groups"]),
        "recent_errors": errors,
        "mirrors": outbox.state(index.conn),
        "progress": sessions.progress(index),
    }
