"""Read-only views of the index for ``dupligone status`` and ``dupligone groups`` (and the web page)."""

from __future__ import annotations

from typing import Any

from dupligoned.adapters import outbox
from dupligoned.adapters.index import Index
from dupligoned.errors import UsageError
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
    }


def groups_json(index: Index, token: str | None = None) -> dict[str, Any]:
    """The current groups in the shape of ``dupligone scan --json``: ``{"photos", "clusters":
    [{"members", "keep", "delete", "reasons", "session"}], "errors"}`` with absolute paths.

    Recommendations, overridden by the person's decisions where there are any. Raises
    ``UsageError`` for an unknown token.
    """
    params: tuple[Any, ...] = ()
    where = ""
    if token is not None:
        sid = index.scalar("SELECT id FROM sessions WHERE token = ?", (token,))
        if sid is None:
            raise UsageError(f"no session with token {token!r}")
        where, params = "WHERE g.session_id = ?", (sid,)
    rows = index.query(
        "SELECT g.id AS gid, s.token, p.path, m.recommended, m.reason, d.action "
        "FROM groups g JOIN sessions s ON s.id = g.session_id "
        "JOIN group_members m ON m.group_id = g.id JOIN photos p ON p.id = m.photo_id "
        "LEFT JOIN decisions d ON d.session_id = g.session_id AND d.photo_id = p.id "
        f"{where} ORDER BY g.session_id, g.position, m.position", params)
    clusters: dict[int, dict[str, Any]] = {}
    for r in rows:
        c = clusters.setdefault(r["gid"], {"members": [], "keep": [], "delete": [], "reasons": {}, "session": r["token"]})
        verdict = r["action"] if r["action"] in ("keep", "delete") else r["recommended"]
        c["members"].append(r["path"])
        c[verdict].append(r["path"])
        c["reasons"][r["path"]] = r["reason"]
    if token is not None:
        n = index.scalar("SELECT COUNT(*) FROM photos WHERE status = 'ok' AND session_id = ?", params)
        errs = index.query("SELECT path, error FROM photos WHERE status = 'error' AND session_id = ? ORDER BY path", params)
    else:
        n = index.scalar("SELECT COUNT(*) FROM photos WHERE status = 'ok'")
        errs = index.query("SELECT path, error FROM photos WHERE status = 'error' ORDER BY path")
    return {
        "photos": int(n or 0),
        "clusters": list(clusters.values()),
        "errors": [{"path": e[0], "reason": e[1]} for e in errs],
    }
