"""Review: the one service the web page, its JSON API and the CLI call for what a person sees
and decides. It reads a session's groups as shown (photos split out or gone left out, the
keeper first, quality score), the home page's counts and the CLI's ``groups --json``; records
guarded decisions and accept-all; plans and performs a confirmation (through ``services.trash``:
moves recorded first, undoable) that first saves, in an XMP sidecar beside each kept photo, the
metadata only the deleted copies carry.

Reads take a fixed number of queries per page (never one per photo).

A photo's *verdict* (``verdict()``, the one place it is decided) is the person's decision when
there is one, else the recommendation; a photo in a protected folder is always kept. A group always keeps at least one photo: a
decision that would delete every copy is refused, and so is a confirmation of such a group.

Raises ``ReviewError`` (a ``DupliGoneError``) with a message meant for the person;
``UnknownSession`` / ``UnknownPhoto`` when a token or id does not exist.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import weakref
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from dupligoned.adapters import companions as companion_files
from dupligoned.adapters import metadata
from dupligoned.adapters.index import Index
from dupligoned.core import originals
from dupligoned.core.model import PhotoInfo
from dupligoned.core.quality import Quality, QualityWeights, shown
from dupligoned.errors import DupliGoneError, UsageError
from dupligoned.services import sessions, trash

log = logging.getLogger("dupligone.review")

ACTIONS = ("keep", "delete", "split", "undo")


class ReviewError(DupliGoneError):
    pass


class UnknownSession(ReviewError):
    pass


class UnknownPhoto(ReviewError):
    pass


_MEMBERS_SQL = """
SELECT g.id AS group_id, g.position AS group_position, g.uncertain AS group_uncertain, m.position AS member_position, m.recommended, m.reason,
       d.action, p.id, p.path, p.size_bytes, p.width, p.height, p.format, p.taken_at, p.camera, p.has_gps,
       p.sharpness, p.brightness, p.contrast, p.noise, p.faces, p.jpeg_quality, p.lossless, p.thumb, p.status,
       COALESCE(f.protected, 0) AS protected, v.seen_at IS NOT NULL AS seen, k.why AS kept_why
FROM groups g
JOIN group_members m ON m.group_id = g.id
JOIN photos p ON p.id = m.photo_id
LEFT JOIN folders f ON f.id = p.folder_id
LEFT JOIN decisions d ON d.session_id = g.session_id AND d.photo_id = m.photo_id
LEFT JOIN review_views v ON v.session_id = g.session_id AND v.photo_id = m.photo_id
LEFT JOIN library_keeps k ON k.photo_id = m.photo_id
WHERE g.session_id = ?
ORDER BY g.position, m.position
"""


def _session_rows(index: Index, token: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Sessions (newest first, or the one with ``token``) with their photo counts and state.

    Same figures as ``sessions.list_sessions`` (``sessions.with_counts``: the counts the
    index's triggers keep, not a count of every photo of the library at each request).
    """
    if token is not None:
        rows = [dict(r) for r in index.query("SELECT * FROM sessions WHERE token = ?", (token,))]
    else:
        rows = [dict(r) for r in index.query("SELECT * FROM sessions ORDER BY id DESC LIMIT ?", (limit,))]
    return sessions.with_counts(index, rows) if rows else []


def session_by_token(index: Index, token: str) -> dict[str, Any]:
    """The session with ``token``, with its counts and state. Raises ``UnknownSession``."""
    rows = _session_rows(index, token) if token else []
    if not rows:
        raise UnknownSession("no such session (the link may be old: reviewed sessions are removed after a while)")
    return rows[0]


def verdict(action: str | None, recommended: str, protected: bool) -> str:
    """What happens to a photo at a confirmation: ``keep`` or ``delete``. The person's decision
    when there is one, else the recommendation; a protected photo, or one split out as "not a
    duplicate", is kept. (``_COUNTS_SQL`` says the same in SQL for the home page's counts.)"""
    if protected or action == "split":
        return "keep"
    return action if action in ("keep", "delete") else recommended


def card_figures(p: PhotoInfo, weights: QualityWeights = QualityWeights()) -> dict[str, Any]:
    """The figures a photo's review card shows (what the index stores from its analysis)."""
    return {**shown(p.quality, weights), "jpeg_quality": p.jpeg_quality}


def _photo(r: Any, weights: QualityWeights) -> dict[str, Any]:
    q = Quality(float(r["sharpness"] or 0), float(r["brightness"] or 0), float(r["contrast"] or 0),
                float(r["noise"] or 0), int(r["faces"] or 0))
    protected = bool(r["protected"])
    return {
        "id": int(r["id"]), "path": r["path"], "name": os.path.basename(r["path"]),
        "size_bytes": int(r["size_bytes"]), "width": r["width"], "height": r["height"], "format": r["format"],
        "taken_at": r["taken_at"], "camera": r["camera"], "has_gps": bool(r["has_gps"]),
        "jpeg_quality": r["jpeg_quality"], "lossless": bool(r["lossless"]),
        # The card's figures, as the keeper's reasons quote them (core.quality.shown).
        "noise": shown(q, weights)["noise"],
        "quality": {**shown(q, weights),
                    "faces": None if r["faces"] is None else int(r["faces"])},  # None: not measured
        "recommended": r["recommended"], "reason": r["reason"], "decision": r["action"],
        "verdict": verdict(r["action"], r["recommended"], protected), "protected": protected, "has_thumb": bool(r["thumb"]),
        "seen": bool(r["seen"]), "kept_before": r["kept_why"],
    }


def groups_of(index: Index, session_id: int, weights: QualityWeights = QualityWeights()) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The session's current groups (members that still exist and were not split out; groups of
    at least two) and the photos split out of them. One query."""
    groups: dict[int, dict[str, Any]] = {}
    for r in index.query(_MEMBERS_SQL, (session_id,)):
        if r["status"] == "gone" or r["action"] == "split":
            continue
        g = groups.setdefault(int(r["group_id"]), {"id": int(r["group_id"]), "photos": [],
                                                   "keeper_uncertain": bool(r["group_uncertain"])})
        g["photos"].append(_photo(r, weights))
    out: list[dict[str, Any]] = []
    for g in groups.values():
        if len(g["photos"]) < 2:
            continue
        photos = g["photos"]
        # The keeper first: the page highlights it, the compare view starts with it.
        photos.sort(key=lambda p: (p["verdict"] != "keep", p["recommended"] != "keep"))
        g["shots"] = _shots(photos)
        g["position"] = len(out)
        g["keep"] = [p["id"] for p in photos if p["verdict"] == "keep"]
        g["delete"] = [p["id"] for p in photos if p["verdict"] == "delete"]
        g["decided"] = all(p["decision"] in ("keep", "delete") for p in photos)
        # Reviewed: the person opened it (saw every member now in it), decided a photo of it, or
        # accepted it with "accept all". Only reviewed groups are confirmed unless included.
        g["reviewed"] = any(p["decision"] for p in photos) or all(p["seen"] for p in photos)
        g["freed_bytes"] = sum(p["size_bytes"] for p in photos if p["verdict"] == "delete")
        out.append(g)
    # Photos split out stay out of the groups (also after re-clustering, which drops them from
    # group_members); they are listed so that the person can undo.
    split = [{"id": int(r["id"]), "path": r["path"], "name": os.path.basename(r["path"]), "has_thumb": bool(r["thumb"])}
             for r in index.query("SELECT p.id, p.path, p.thumb FROM decisions d JOIN photos p ON p.id = d.photo_id "
                                  "WHERE d.session_id = ? AND d.action = 'split' AND p.status != 'gone' ORDER BY p.path",
                                  (session_id,))]
    return out, split


def _shots(photos: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The group's photos as shots: a camera's RAW+JPEG pair is one shot with two files (the RAW
    first), every other photo a shot of its own. Sets each photo's ``index`` (1, 2, … as shown,
    the keys that pick it) and, on pair members, ``pair_with`` (the other file's name); reorders
    ``photos`` to match."""
    from types import SimpleNamespace

    pairs = originals.raw_jpeg_pairs([SimpleNamespace(path=p["path"], format=str(p["format"] or ""),
                                                      taken_at=p["taken_at"]) for p in photos])
    partner = {r: j for j, r in pairs.items()}
    shots: list[list[dict[str, Any]]] = []
    for k, p in enumerate(photos):
        if k in pairs:
            continue  # shown beside its RAW
        shot = [p] + ([photos[partner[k]]] if k in partner else [])
        if len(shot) == 2:
            shot[0]["pair_with"], shot[1]["pair_with"] = shot[1]["name"], shot[0]["name"]
        shots.append(shot)
    photos[:] = [p for shot in shots for p in shot]
    for i, p in enumerate(photos, 1):
        p["index"] = i
    return shots
# What a reason says, in a word, for the overview's filter (first match wins).
REASON_KINDS = (
    ("identical copy", "identical copy"), ("uploaded", "upload already in the library"), ("your rule", "your rule"),
    ("lower resolution", "smaller copy"), ("smaller copy", "smaller copy"), ("cropped", "crop"),
    ("heavily compressed", "heavily compressed"), ("darker", "exposure"), ("brighter", "exposure"),
    ("darkened", "exposure"), ("brightened", "exposure"),
    ("blurrier", "blurrier"), ("noisier", "noisier"), ("sharpened", "sharpened"), ("edited copy", "edited"),
    ("weaker shot", "weaker shot"), ("lossy", "re-encoded"), ("re-saved", "re-encoded"),
    ("lower jpeg quality", "re-encoded"), ("conversion", "re-encoded"), ("re-encode", "re-encoded"),
)


def reason_kind(reason: str | None) -> str:
    r = (reason or "").lower()
    return next((kind for key, kind in REASON_KINDS if key in r), "other")


def uncertainty(g: dict[str, Any]) -> list[str]:
    """Why the keeper of a group may be the wrong one (empty: a clear case). The keeper's own
    ``uncertain`` flag (``GroupDecision.uncertain``, stored as ``groups.uncertain``) counts
    first; then what the verdicts say: close scores between distinct shots, a copy to delete
    larger than the keeper, copies told apart by nothing, an upload that looks better."""
    why = []
    keep = [p for p in g["photos"] if p["verdict"] == "keep"]
    dels = [p for p in g["photos"] if p["verdict"] == "delete"]
    if g.get("keeper_uncertain") or any(p.get("uncertain") for p in g["photos"]):
        why.append("the keeper's choice was close")
    if not keep or not dels:
        return why
    best = max(p["quality"]["score"] for p in keep)
    if any((p["reason"] or "").startswith("weaker shot") and best - p["quality"]["score"] < 0.05 for p in dels):
        why.append("distinct shots with nearly the same quality score")
    top = max((p["width"] or 0) * (p["height"] or 0) for p in keep)
    if any((p["width"] or 0) * (p["height"] or 0) > top * 1.01 for p in dels):
        why.append("a copy marked for deletion has more pixels than the kept photo")
    if any((p["reason"] or "").startswith("re-encoded copy") for p in dels):
        why.append("the copies differ in no clear way")
    if any("looks better" in (p["reason"] or "") for p in dels):
        why.append("the upload looks better than the library's photo")
    return why


def _ratio_words(name: str, mine: float, theirs: float, more: str, less: str) -> str | None:
    """``4.2x noisier`` / ``-92% sharpness``: a figure against the keeper's, in words."""
    if theirs <= 0 or mine <= 0 or abs(mine / theirs - 1) < 0.05:
        return None
    r = mine / theirs
    if r >= 1.5:
        return f"{r:.1f}x {more}"
    if r <= 1 / 1.5 and less:
        return f"{1 / r:.1f}x {less}"
    return f"{(r - 1) * 100:+.0f}% {name}"


def differences(p: dict[str, Any], keeper: dict[str, Any]) -> list[str]:
    """How a photo differs from the group's keeper, in words and relative figures."""
    out = []
    pk = (keeper["width"] or 0) * (keeper["height"] or 0)
    pp = (p["width"] or 0) * (p["height"] or 0)
    if pk and pp and pp != pk:
        share = pp / pk
        words = {0.25: "a quarter of the pixels", 0.5: "half the pixels", 2.0: "twice the pixels",
                 4.0: "four times the pixels"}
        near = next((w for f, w in words.items() if abs(share / f - 1) < 0.06), None)
        out.append(near or (f"{share:.0%} of the pixels" if share < 1 else f"{share:.1f}x the pixels"))
    q, qk = p["quality"], keeper["quality"]
    for figure, more, less in (("sharpness", "sharper", "blurrier"), ("noise", "noisier", "cleaner")):
        if figure in (p["reason"] or ""):
            continue  # the reason already gives this figure, measured closer (at a common size)
        mine = float(p.get(figure, 0) or 0) if figure == "noise" else float(q["sharpness"])
        theirs = float(keeper.get(figure, 0) or 0) if figure == "noise" else float(qk["sharpness"])
        w = _ratio_words(figure, mine, theirs, more, less)
        if w:
            out.append(w)
    if abs(float(q["brightness"]) - float(qk["brightness"])) >= 8:
        out.append("darker" if q["brightness"] < qk["brightness"] else "brighter")
    if p["size_bytes"] and keeper["size_bytes"] and abs(p["size_bytes"] / keeper["size_bytes"] - 1) >= 0.1:
        out.append(f"{p['size_bytes'] / keeper['size_bytes'] - 1:+.0%} file size")
    if p["format"] != keeper["format"]:
        out.append(f"{p['format']} instead of {keeper['format']}")
    elif p.get("jpeg_quality") and keeper.get("jpeg_quality") and p["jpeg_quality"] != keeper["jpeg_quality"]:
        out.append(f"JPEG quality {p['jpeg_quality']} vs {keeper['jpeg_quality']}")
    if keeper.get("camera") and not p.get("camera"):
        out.append("no camera data")
    return out


def explain(group: dict[str, Any]) -> dict[str, Any]:
    """Adds to each photo of one group (the one on screen) its ``differences`` from the keeper."""
    keeper = group["photos"][0]
    for p in group["photos"]:
        p["differences"] = differences(p, keeper) if p is not keeper else []
    return group


def overview(groups: list[dict[str, Any]], *, order: str = "uncertain", reason: str = "", folder: str = "") -> dict[str, Any]:
    """The overview grid: every group with its keeper, copies, space freed, whether it is
    uncertain (and why), reviewed, its reason kinds and folders; filtered by ``reason`` kind and
    ``folder``, uncertain groups first unless ``order`` is ``"position"``. Also the filter choices."""
    reasons: dict[str, int] = {}
    folders: dict[str, int] = {}
    cards: list[dict[str, Any]] = []
    for g in groups:
        kinds = sorted({reason_kind(p["reason"]) for p in g["photos"] if p["verdict"] == "delete"})
        dirs = sorted({os.path.dirname(p["path"]) for p in g["photos"]})
        for k in kinds:
            reasons[k] = reasons.get(k, 0) + 1
        for d in dirs:
            folders[d] = folders.get(d, 0) + 1
        if reason and reason not in kinds:
            continue
        if folder and folder not in dirs:
            continue
        cards.append({"group": g, "uncertain": uncertainty(g), "kinds": kinds, "folders": dirs})
    if order != "position":
        cards.sort(key=lambda c: (not c["uncertain"], c["group"]["position"]))
    return {"cards": cards, "reasons": sorted(reasons.items()), "folders": sorted(folders.items()),
            "uncertain": sum(1 for g in groups if uncertainty(g))}


def summary(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "groups": len(groups),
        "photos": sum(len(g["photos"]) for g in groups),
        "to_delete": sum(len(g["delete"]) for g in groups),
        "to_review": sum(1 for g in groups for p in g["photos"] if p["decision"] is None),
        "unreviewed_groups": sum(1 for g in groups if not g["reviewed"]),
        "freed_bytes": sum(g["freed_bytes"] for g in groups),
    }


def result(index: Index, token: str, weights: QualityWeights = QualityWeights()) -> dict[str, Any]:
    """A session's result (the seed's ``getResult``): the session, its groups with every photo's
    facts, recommendation, decision and verdict, the photos split out, and a summary."""
    s = session_by_token(index, token)
    groups, split = groups_of(index, int(s["id"]), weights)
    return {"session": {**public_session(s), "last_added_at": s["last_added_at"]}, "groups": groups, "split": split,
            "summary": summary(groups)}


def public_session(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("token", "kind", "state", "photos", "queued", "errors", "groups", "created_at",
                              "closed_at", "clustered_at", "reviewed_at")}


def waiting(s: dict[str, Any], quiet_s: float, now: float, received: int | None = None) -> dict[str, Any]:
    """What an unfinished session waits for, in words, with the figures behind them:
    ``{"text", "closes_in_s", "received", "analysed", "to_analyse"}``. ``received``: files of an
    upload already stored (some may not be in the index yet)."""
    analysed = int(s["photos"]) - int(s["queued"]) - int(s["errors"])
    known = int(s["photos"])
    got = max(received or 0, known)
    out: dict[str, Any] = {"closes_in_s": None, "received": got, "analysed": analysed,
                           "to_analyse": got - analysed - int(s["errors"])}
    state = s["state"]
    if state == "open" and s["kind"] in ("burst", "upload"):
        left = max(0, round(float(s["last_added_at"]) + quiet_s - now))
        out["closes_in_s"] = left
        what = "uploaded photo" if s["kind"] == "upload" else "new photo"
        out["text"] = (f"Waiting for more photos: grouping {quiet_s:g} s after the last {what} "
                       f"(in {left} s, unless another arrives).")
    elif state == "open":
        out["text"] = "Scanning the folder: grouping starts when the scan is done."
    elif state == "analysing":
        out["text"] = f"Analysing: {out['to_analyse']} of {got} photos to go; grouping starts when all are analysed."
    elif state == "clustering":
        out["text"] = "Grouping the photos…"
    else:
        out["text"] = ""
    return out


_COUNTS_SQL = """
SELECT g.session_id,
       COUNT(*) AS members,
       SUM(d.action IS NULL) AS undecided,
       SUM(CASE WHEN COALESCE(f.protected, 0) = 0 AND COALESCE(d.action, m.recommended) = 'delete'
                THEN 1 ELSE 0 END) AS to_delete,
       SUM(CASE WHEN COALESCE(f.protected, 0) = 0 AND COALESCE(d.action, m.recommended) = 'delete'
                THEN p.size_bytes ELSE 0 END) AS freed_bytes
FROM groups g
JOIN group_members m ON m.group_id = g.id
JOIN photos p ON p.id = m.photo_id AND p.status != 'gone'
LEFT JOIN folders f ON f.id = p.folder_id
LEFT JOIN decisions d ON d.session_id = g.session_id AND d.photo_id = m.photo_id
WHERE g.session_id IN ({ids})
GROUP BY g.session_id
"""


_home_cache: weakref.WeakKeyDictionary[Index, tuple[tuple[int, int, int], dict[int, Any]]] = weakref.WeakKeyDictionary()


def _review_counts(index: Index, ids: list[int]) -> dict[int, Any]:
    """Per session: members undecided, to delete, bytes freed. This walks every group member of
    the shown sessions, so it is cached until the index changes (``PRAGMA data_version`` moves
    on another connection's commit, ``total_changes`` on ours)."""
    key = (int(index.conn.execute("PRAGMA data_version").fetchone()[0]), index.conn.total_changes, hash(tuple(ids)))
    hit = _home_cache.get(index)
    if hit is not None and hit[0] == key:
        return hit[1]
    counts: dict[int, Any] = {}
    if ids:
        for r in index.query(_COUNTS_SQL.format(ids=",".join("?" * len(ids))), tuple(ids)):
            counts[int(r["session_id"])] = dict(r)
    _home_cache[index] = (key, counts)
    return counts


def home(index: Index, limit: int = 200) -> dict[str, Any]:
    """What the home page shows: the newest sessions with their counts and progress, library
    totals, and the latest errors with their reasons. A fixed number of queries."""
    shown = _session_rows(index, limit=limit)
    n_sessions = int(index.scalar("SELECT COUNT(*) FROM sessions") or 0)
    counts = _review_counts(index, [int(s["id"]) for s in shown])
    out = []
    for s in shown:
        c = counts.get(int(s["id"]))
        d = public_session(s)
        d.update(
            to_review=int(c["undecided"] or 0) if c else 0,
            to_delete=int(c["to_delete"] or 0) if c else 0,
            freed_bytes=int(c["freed_bytes"] or 0) if c else 0,
            done=int(s["photos"]) - int(s["queued"]) - int(s["errors"]),
        )
        out.append(d)
    st = index.status_counts()
    errors = [{"id": int(r[0]), "path": r[1], "reason": r[2]} for r in index.query(
        "SELECT id, path, error FROM photos WHERE status = 'error' ORDER BY analysed_at DESC, id DESC LIMIT 50")]
    return {
        "sessions": out, "more_sessions": max(0, n_sessions - len(shown)),
        "library": {"photos": st.get("ok", 0), "queued": st.get("queued", 0), "errors": st.get("error", 0)},
        "errors": errors,
        "progress": sessions.progress(index),
    }


# ---------------------------------------------------------------- decisions

def _member(index: Index, session_id: int, photo_id: int) -> Any:
    return index.one(
        "SELECT p.id, p.status, COALESCE(f.protected, 0) AS protected, m.group_id, m.recommended "
        "FROM groups g JOIN group_members m ON m.group_id = g.id JOIN photos p ON p.id = m.photo_id "
        "LEFT JOIN folders f ON f.id = p.folder_id WHERE g.session_id = ? AND m.photo_id = ?",
        (session_id, photo_id))


def decide(index: Index, token: str, photo_id: int, action: str, *, now: float | None = None) -> None:
    """Record what the person decided for one photo of a session's groups.

    ``keep`` / ``delete``: this photo's verdict; ``split``: "not a duplicate" — it leaves the
    group and stays out of it at every re-clustering; ``undo``: forget the decision (a split
    photo comes back at the next clustering). Raises ``ReviewError``.
    """
    if action not in ACTIONS:
        raise ReviewError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    now = time.time() if now is None else now
    s = session_by_token(index, token)
    sid = int(s["id"])
    m = _member(index, sid, photo_id)
    split_row = index.one("SELECT action FROM decisions WHERE session_id = ? AND photo_id = ? AND action = 'split'",
                          (sid, photo_id))
    if m is None and not (split_row is not None and action == "undo"):
        raise UnknownPhoto(f"photo {photo_id} is not in this session's groups")
    if m is not None and m["status"] == "gone":
        raise ReviewError("that photo is no longer there (moved to trash or deleted)")
    if action == "delete":
        if m["protected"]:
            raise ReviewError("this photo is in a protected folder and is always kept")
        groups, _ = groups_of(index, sid)
        g = next((g for g in groups if g["id"] == int(m["group_id"])), None)
        if g is not None and g["keep"] == [photo_id]:
            raise ReviewError("every group keeps at least one photo: mark another one Keep first")
    with index.tx() as conn:
        before = conn.execute("SELECT action FROM decisions WHERE session_id = ? AND photo_id = ?", (sid, photo_id)).fetchone()
        if action == "undo":
            conn.execute("DELETE FROM decisions WHERE session_id = ? AND photo_id = ?", (sid, photo_id))
        else:
            conn.execute("INSERT INTO decisions(session_id, photo_id, action, decided_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(session_id, photo_id) DO UPDATE SET action = excluded.action, "
                         "decided_at = excluded.decided_at", (sid, photo_id, action, now))
        if "split" in (action, before[0] if before else None):
            sessions.mark_dirty(conn, [sid])  # out of (or back into) the groups: cluster again
        # Keep and "not a duplicate" hold in every later session, upload and scan.
        if action in KEPT_WHY:
            _remember_keep(conn, photo_id, sid, KEPT_WHY[action], now)
        elif action == "delete":
            conn.execute("DELETE FROM library_keeps WHERE photo_id = ?", (photo_id,))
        else:
            conn.execute("DELETE FROM library_keeps WHERE photo_id = ? AND session_id = ?", (photo_id, sid))
        # A changed decision makes the session one to review again.
        conn.execute("UPDATE sessions SET reviewed_at = NULL WHERE id = ?", (sid,))


KEPT_WHY = {"keep": "you chose to keep it", "split": "you said it is not a duplicate",
            "confirmed": "you kept it in an earlier review", "restored": "you restored it from the trash"}


def _remember_keep(conn: Any, photo_id: int, session_id: int | None, why: str, now: float) -> None:
    conn.execute("INSERT INTO library_keeps(photo_id, session_id, why, decided_at) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(photo_id) DO UPDATE SET session_id = excluded.session_id, why = excluded.why, "
                 "decided_at = excluded.decided_at", (photo_id, session_id, why, now))


def mark_opened(index: Index, token: str, group: dict[str, Any], *, now: float | None = None) -> None:
    """The person has ``group`` (as ``groups_of`` gives it) in front of them (the stepper or
    compare view showed it): its current members count as seen. A member that joins later makes
    the group unreviewed again. Writes nothing when every member was seen already."""
    if all(p["seen"] for p in group["photos"]):
        return
    now = time.time() if now is None else now
    with index.tx() as conn:
        conn.execute("INSERT OR IGNORE INTO review_views(session_id, photo_id, seen_at) "
                     "SELECT g.session_id, m.photo_id, ? FROM sessions s JOIN groups g ON g.session_id = s.id "
                     "JOIN group_members m ON m.group_id = g.id WHERE s.token = ? AND g.id = ?",
                     (now, token, group["id"]))


def accept_all(index: Index, token: str, *, now: float | None = None) -> int:
    """Take the recommendation for every photo the person has not decided yet. Returns how many."""
    now = time.time() if now is None else now
    sid = int(session_by_token(index, token)["id"])
    with index.tx() as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO decisions(session_id, photo_id, action, decided_at) "
            "SELECT g.session_id, m.photo_id, m.recommended, ? FROM groups g JOIN group_members m ON m.group_id = g.id "
            "WHERE g.session_id = ?", (now, sid))
        return int(cur.rowcount)


# ---------------------------------------------------------------- dry run and confirm

@dataclass
class Sidecar:
    keeper_id: int
    keeper_path: str
    sidecar_path: str
    fields: dict[str, str]  # label -> value, for the page
    meta: metadata.PhotoMeta


@dataclass
class Plan:
    """Exactly what a confirmation would do."""

    token: str
    moves: list[dict[str, Any]] = field(default_factory=list)  # {photo_id, path, size_bytes, group, companions}
    sidecars: list[Sidecar] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # groups not confirmed, with why
    # Groups nobody opened, decided or accepted, and not included: nothing of them moves.
    # {group_id, group, files, freed_bytes, photos: [{id, name, path, verdict, has_thumb}]}
    unreviewed: list[dict[str, Any]] = field(default_factory=list)
    keepers: list[int] = field(default_factory=list)  # kept photos of the groups confirmed

    @property
    def freed_bytes(self) -> int:
        return sum(int(m["size_bytes"]) for m in self.moves)

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token, "moves": self.moves, "files": len(self.moves), "freed_bytes": self.freed_bytes,
            "sidecars": [{"keeper_id": s.keeper_id, "keeper_path": s.keeper_path, "sidecar_path": s.sidecar_path,
                          "fields": s.fields} for s in self.sidecars],
            "skipped": self.skipped, "unreviewed": self.unreviewed,
        }


def metadata_gaps(group: dict[str, Any], read: Callable[[str], metadata.PhotoMeta] = metadata.read_metadata
                  ) -> list[tuple[dict[str, Any], metadata.PhotoMeta]]:
    """For each kept photo of a group, what the copies marked for deletion carry and it lacks."""
    deleted = [p for p in group["photos"] if p["verdict"] == "delete"]
    if not deleted:
        return []
    others = [read(p["path"]) for p in deleted]
    out = []
    for k in (p for p in group["photos"] if p["verdict"] == "keep"):
        gap = metadata.missing_from(read(k["path"]), others)
        if any(gap.has(f) for f in metadata.FIELDS):
            out.append((k, gap))
    return out


def gap_fields(gap: metadata.PhotoMeta) -> dict[str, str]:
    return {metadata.FIELD_LABELS[f]: gap.display(f) for f in metadata.FIELDS if gap.has(f)}


Include = bool | Collection[int]


def plan_confirm(index: Index, token: str, include: Include = False) -> Plan:
    """The dry run: which files would move to trash, the space freed, the sidecars written.
    Moves and writes nothing.

    Only groups the person reviewed (opened, decided or accepted) are confirmed; the others are
    listed in ``unreviewed``, unless ``include`` is ``True`` (all of them) or holds their group ids.
    """
    s = session_by_token(index, token)
    groups, _ = groups_of(index, int(s["id"]))
    plan = Plan(token=token)
    for g in groups:
        dels = [p for p in g["photos"] if p["verdict"] == "delete" and not p["protected"]]
        if not dels:
            continue
        included = include is True or (not isinstance(include, bool) and g["id"] in include)
        if not g["reviewed"] and not included:
            plan.unreviewed.append({
                "group_id": g["id"], "group": g["position"], "files": len(dels),
                "freed_bytes": sum(int(p["size_bytes"]) for p in dels),
                "photos": [{k: p[k] for k in ("id", "name", "path", "verdict", "has_thumb", "reason")}
                           for p in g["photos"]],
            })
            continue
        if not g["keep"]:
            plan.skipped.append({"group": g["position"], "why": "every photo of this group is marked for deletion"})
            continue
        gone = [p for p in g["photos"] if p["id"] in g["keep"] and not _as_analysed(p)]
        if gone:
            # Its copies would be all that is left: a keeper deleted, moved or changed by
            # another program since it was analysed, or on a disk gone offline.
            plan.skipped.append({"group": g["position"], "why": f"the photo to keep, {gone[0]['name']}, is no longer "
                                 f"at {gone[0]['path']} as it was analysed: nothing of this group moves"})
            continue
        plan.keepers += g["keep"]
        for p in dels:
            plan.moves.append({"photo_id": p["id"], "path": p["path"], "name": p["name"], "size_bytes": p["size_bytes"],
                               "group": g["position"], "has_thumb": p["has_thumb"], "reason": p["reason"],
                               "companions": []})
        for keeper, gap in metadata_gaps(g):
            plan.sidecars.append(Sidecar(keeper["id"], keeper["path"], metadata.sidecar_path(keeper["path"]),
                                         gap_fields(gap), gap))
    # The Live Photo videos, sidecars and Takeout files that go with the photos (``trash.plan``).
    # Also for the groups not reviewed: ticking one shows what would go with it.
    maybe = [p for u in plan.unreviewed for p in u["photos"] if p["verdict"] == "delete"]
    going = companion_files.companions_for_batch([m["path"] for m in plan.moves] + [p["path"] for p in maybe])
    for m in plan.moves:
        m["companions"] = list(going[m["path"]])
    for p in maybe:
        p["companions"] = list(going[p["path"]])
    return plan


def _as_analysed(photo: dict[str, Any]) -> bool:
    """Whether a photo's file is still where it was analysed: a regular file (not a link) of the
    size the index holds."""
    try:
        st = os.lstat(photo["path"])
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == int(photo["size_bytes"])


@dataclass
class Confirmation:
    moved: list[trash.TrashMove]
    sidecars: list[str]
    skipped: list[dict[str, Any]]
    failed: str | None = None
    unreviewed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "moved": [{"photo_id": m.photo_id, "path": m.path, "size_bytes": m.size_bytes, "trash_id": m.trash_id,
                       "trash_path": m.trash_path, "companions": list(m.companions)}
                      for m in self.moved],
            "files": len(self.moved), "freed_bytes": sum(m.size_bytes for m in self.moved),
            "sidecars": self.sidecars, "skipped": self.skipped, "failed": self.failed, "unreviewed": self.unreviewed,
        }


def confirm(index: Index, token: str, root_for: Callable[[str], str], *, include: Include = False,
            now: float | None = None) -> Confirmation:
    """Do what ``plan_confirm`` shows (the same ``include``): write the sidecars (before the
    copies go, while their metadata can still be read), then move the copies to trash in one
    batch, and mark the session reviewed when no group was left unreviewed. A file that cannot
    be moved stops the batch; what moved stays moved and ``failed`` says why."""
    now = time.time() if now is None else now
    plan = plan_confirm(index, token, include)
    written = []
    for sc in plan.sidecars:
        try:
            written.append(metadata.write_sidecar(sc.keeper_path, sc.meta))
        except OSError as exc:
            raise ReviewError(f"cannot write the sidecar beside {sc.keeper_path}: {exc.strerror or exc}; "
                              "nothing was moved") from None
    sid = int(session_by_token(index, token)["id"])
    failed = None
    moved: list[trash.TrashMove] = []
    try:
        moved = _move_all(index, [int(m["photo_id"]) for m in plan.moves], root_for, sid, now)
    except _PartialMove as exc:
        moved, failed = exc.moved, exc.why
    if failed is None:
        # The keepers of the confirmed groups are the person's choice from now on.
        with index.tx() as conn:
            conn.executemany("INSERT OR IGNORE INTO library_keeps(photo_id, session_id, why, decided_at) VALUES (?, ?, ?, ?)",
                             [(pid, sid, KEPT_WHY["confirmed"], now) for pid in plan.keepers])
        if not plan.unreviewed:
            sessions.mark_reviewed(index, token, now)
    log.info("session %s confirmed: %d files to trash, %d sidecars, %d groups not reviewed left alone",
             token[:6] + "…", len(moved), len(written), len(plan.unreviewed))
    return Confirmation(moved, written, plan.skipped, failed, plan.unreviewed)


class _PartialMove(Exception):
    def __init__(self, moved: list[trash.TrashMove], why: str) -> None:
        self.moved, self.why = moved, why


def _move_all(index: Index, ids: Iterable[int], root_for: Callable[[str], str], sid: int, now: float) -> list[trash.TrashMove]:
    moved: list[trash.TrashMove] = []
    for pid in ids:
        try:
            moved += trash.move_to_trash(index, [pid], root_for, session_id=sid, now=now)
        except trash.TrashError as exc:
            raise _PartialMove(moved, str(exc)) from None
    return moved


def restore(index: Index, trash_ids: Iterable[int], *, now: float | None = None) -> list[str]:
    """Put trashed photos back (``trash.restore``) and keep them: each is kept in its group and
    never offered again against the same copies. Returns the paths restored. Raises
    ``trash.TrashError`` at the first that cannot be restored (those before it stay restored)."""
    now = time.time() if now is None else now
    out = []
    for tid in trash_ids:
        row = index.one("SELECT photo_id, session_id FROM trash WHERE id = ?", (tid,))
        out.append(trash.restore(index, tid, now=now))
        if row is None or row["photo_id"] is None:
            continue
        pid, sid = int(row["photo_id"]), row["session_id"]
        with index.tx() as conn:
            _remember_keep(conn, pid, sid, KEPT_WHY["restored"], now)
            if sid is not None:
                conn.execute("INSERT INTO decisions(session_id, photo_id, action, decided_at) VALUES (?, ?, 'keep', ?) "
                             "ON CONFLICT(session_id, photo_id) DO UPDATE SET action = 'keep', decided_at = excluded.decided_at",
                             (sid, pid, now))
    return out


def trash_entries(index: Index, retention_days: float) -> list[dict[str, Any]]:
    """What is in the trash, newest first, each with when it will be purged."""
    out = []
    entries = trash.list_trash(index)
    comps = trash.companions_of_entries(index, [int(str(r["id"])) for r in entries])
    for r in entries:
        d = dict(r)
        d["companions"] = [os.path.basename(str(c["original_path"])) for c in comps[int(str(r["id"]))]]
        d["purge_at"] = float(r["moved_at"]) + retention_days * 86400  # type: ignore[arg-type]
        d["name"] = os.path.basename(str(r["original_path"]))
        out.append(d)
    return out


def groups_json(index: Index, token: str | None = None) -> dict[str, Any]:
    """The current groups in the shape of ``dupligone scan --json`` (``dupligone groups``):
    ``{"photos", "clusters": [{"members", "keep", "delete", "reasons", "companions", "session"}], "errors"}``
    with absolute paths; each photo's verdict as the page shows it. Raises ``UsageError`` for
    an unknown token."""
    if token is not None:
        rows = _session_rows(index, token)
        if not rows:
            raise UsageError(f"no session with token {token!r}")
    else:
        rows = [dict(r) for r in index.query("SELECT id, token FROM sessions ORDER BY id")]
    clusters = []
    listing = companion_files.FolderListing()
    for s in rows:
        groups, _ = groups_of(index, int(s["id"]))
        for g in groups:
            clusters.append({
                "members": [p["path"] for p in g["photos"]],
                "keep": [p["path"] for p in g["photos"] if p["verdict"] == "keep"],
                "delete": [p["path"] for p in g["photos"] if p["verdict"] == "delete"],
                "reasons": {p["path"]: p["reason"] for p in g["photos"]},
                "companions": {p["path"]: list(listing.companions_of(p["path"]).all) for p in g["photos"]},
                "session": s["token"],
            })
    where, params = ("AND session_id = ?", (rows[0]["id"],)) if token is not None else ("", ())
    n = index.scalar(f"SELECT COUNT(*) FROM photos WHERE status = 'ok' {where}", params)
    errs = index.query(f"SELECT path, error FROM photos WHERE status = 'error' {where} ORDER BY path", params)
    return {"photos": int(n or 0), "clusters": clusters, "errors": [{"path": e[0], "reason": e[1]} for e in errs]}
