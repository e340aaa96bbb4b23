"""Read-only views of the index for ``dupligone status`` (``dupligone groups`` is ``review.groups_json``)."""

from __future__ import annotations

import time
from typing import Any

from dupligoned.adapters import outbox
from dupligoned.adapters.config import Config
from dupligoned.adapters.index import Index
from dupligoned.adapters.state import low_space
from dupligoned.services import sessions


def offline_libraries(index: Index) -> list[dict[str, Any]]:
    """``[{"path", "offline_since", "reason", "line"}]``: the libraries the daemon found offline."""
    out = []
    for _fid, (path, since, reason) in sorted(index.offline_folders().items()):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(since))
        out.append({"path": path, "offline_since": since, "reason": reason,
                    "line": f"library {path} is offline since {when} ({reason}); its photos, decisions and "
                            "sessions are kept until it is back"})
    return out


def notices(index: Index, cfg: Config | None) -> list[str]:
    """One line per fault a person should know of now: libraries offline, analysis paused."""
    lines = [o["line"] for o in offline_libraries(index)]
    if cfg is not None:
        ls = low_space(cfg.state_dir, cfg.state_min_free_mb)
        if ls is not None:
            lines.append(ls.line())
    return lines


def status(index: Index, cfg: Config | None = None) -> dict[str, Any]:
    """``{"photos", "queued", "errors", "gone", "sessions": [{"token", "photos", "groups", "state", ...}],
    "recent_errors": [{"path", "reason"}], "mirrors": [{"name", "pending", "lag_s", "last_error", ...}],
    "offline": [{"path", "offline_since", "reason", "line"}], "notices": [line]}``;
    photos counts analysed photos (``ok``); mirrors lists the enabled mirrors (``outbox.state``);
    notices says what is wrong now (a library offline, analysis paused for want of space)."""
    counts = index.status_counts()
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
        "offline": offline_libraries(index),
        "notices": notices(index, cfg),
    }
