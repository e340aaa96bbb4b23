"""Clustering sessions against the whole library.

A session's photos are grouped together with their near neighbours anywhere in the library
(``core.neighbours.query``: incremental, no N×N), so a copy of an old photo lands in a group
with the old one. eps is chosen once for the whole library (the k-distance elbow needs many
photos to mean anything) and cached in ``meta`` until the library grows or shrinks by a tenth
or the parameters change.

Heavy crops recorded by ``library_crops`` join the members and the grouping as verified pairs.

Groups are replaced at every re-clustering; decisions are kept in their own table, so what a
person decided survives. A photo a person split out ("not a duplicate") stays out of the
session's groups.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dupligoned.adapters.config import ClusterConfig, KeeperConfig, RulesConfig
from dupligoned.adapters.index import Index
from dupligoned.core import clustering, neighbours, originals
from dupligoned.core.crops import crop_links
from dupligoned.core.keeper import KeeperParams
from dupligoned.core.model import GroupDecision, PhotoInfo, Verdict
from dupligoned.core.quality import Quality, QualityWeights
from dupligoned.core.rules import Rules, fixed_keeps, keeper_pool, merge, relabel
from dupligoned.services import bursts, library_crops
from dupligoned.services import rules as rules_service
from dupligoned.services.crops import mark_crops
from dupligoned.services.grouping import group_photos

log = logging.getLogger("dupligone.cluster")

Decider = Callable[[Sequence[PhotoInfo], KeeperParams], GroupDecision]

DECIDE_THREADS = min(4, os.cpu_count() or 1)  # groups whose keeper is decided at once


@dataclass(frozen=True)
class ClusterSettings:
    cluster: clustering.ClusterParams
    keeper: KeeperParams
    rules: Rules = Rules()  # from the config; the page's saved rules win (``services.rules``)

    def fingerprint(self) -> str:
        data = {"cluster": dataclasses.asdict(self.cluster), "keeper": dataclasses.asdict(self.keeper),
                "rules": dataclasses.asdict(self.rules)}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Library:
    """The analysed photos of the index as arrays: ids, packed codes."""

    ids: npt.NDArray[np.int64]
    codes: npt.NDArray[np.uint8]

    @classmethod
    def load(cls, index: Index, chunk: int = 50_000) -> Library:
        """Read in chunks: 24 bytes a photo are kept, never a million rows as Python tuples."""
        parts = [cls._of(rows) for rows in index.ok_hashes(chunk)]
        if not parts:
            return cls(np.empty(0, np.int64), np.empty((0, neighbours.CODE_BYTES), np.uint8))
        return cls(np.concatenate([p.ids for p in parts]), np.concatenate([p.codes for p in parts]))

    @classmethod
    def _of(cls, rows: Sequence[tuple[int, int, int]]) -> Library:
        arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return cls(arr[:, 0].copy(), neighbours.pack(arr[:, 1].view(np.uint64), arr[:, 2].view(np.uint64)))

    def updated(self, changed: Sequence[int], rows: Sequence[tuple[int, int, int]]) -> Library:
        """This library with the photos ``changed`` replaced by ``rows`` (those still analysed)."""
        keep = ~np.isin(self.ids, np.asarray(changed, np.int64))
        new = Library._of(sorted(rows))
        ids, codes = self.ids[keep], self.codes[keep]
        at = np.searchsorted(ids, new.ids)
        return Library(np.insert(ids, at, new.ids), np.insert(codes, at, new.codes, axis=0))


class LibraryCache:
    """The daemon's ``Library`` between sessions: loaded once, then brought up to date from the
    index's log of photos whose status or hashes changed (``photo_changes``, written by triggers
    whoever made the change), so a session of one photo does not read a million rows."""

    REBUILD_SHARE = 0.2  # more changes than this share of the library: read it all again

    def __init__(self) -> None:
        self.lib: Library | None = None
        self.seq = 0

    def get(self, index: Index) -> Library:
        upto = index.photo_change_seq()
        if self.lib is None:
            self.lib = Library.load(index)
        elif upto > self.seq:
            changed = index.photos_changed(self.seq, upto)
            if len(changed) > self.REBUILD_SHARE * max(1, len(self.lib.ids)):
                self.lib = Library.load(index)
            else:
                self.lib = self.lib.updated(changed, index.ok_hashes_of(changed))
        if upto > self.seq:
            self.seq = upto
            index.forget_photo_changes(upto)
        return self.lib


def library_eps(index: Index, lib: Library, settings: ClusterSettings) -> float:
    """eps for the whole library, cached in ``meta`` (recomputed when the library changes by 10%)."""
    fp = settings.fingerprint()
    cached = index.get_meta("library_eps")
    if cached:
        c = json.loads(cached)
        n0 = max(1, int(c["photos"]))
        if c["fp"] == fp and abs(len(lib.ids) - n0) <= 0.1 * n0:
            return float(c["eps"])
    p = settings.cluster
    kd = neighbours.kth_neighbour_distance(lib.codes, p.k, p.kdist_sample) if len(lib.ids) else np.empty(0, np.float32)
    choice = clustering.choose_eps(kd, p)
    with index.tx() as conn:
        index.set_meta(conn, "library_eps", json.dumps(
            {"eps": choice.eps, "method": choice.method, "photos": len(lib.ids), "fp": fp}))
    return choice.eps


def _info(row: dict[str, Any], protected: bool) -> PhotoInfo:
    def u64(v: Any) -> int:
        i = int(v)
        return i + (1 << 64) if i < 0 else i

    return PhotoInfo(
        path=str(row["path"]), size_bytes=int(row["size_bytes"]),
        width=int(row["width"]), height=int(row["height"]), format=str(row["format"]),
        lossless=bool(row["lossless"]), jpeg_quality=row["jpeg_quality"],
        content_hash=str(row["content_hash"]), phash=u64(row["phash"]), dhash=u64(row["dhash"]),
        quality=Quality(float(row["sharpness"]), float(row["brightness"]), float(row["contrast"]),
                        float(row["noise"]), int(row["faces"] or 0)),
        taken_at=row["taken_at"], camera=row["camera"], has_gps=bool(row["has_gps"]), edited_by=row["edited_by"],
        protected=protected,
    )


def _default_decider(photos: Sequence[PhotoInfo], params: KeeperParams) -> GroupDecision:
    from dupligoned.services.decide import decide_group

    return decide_group(photos, params)


def _crop_links(
    infos: list[PhotoInfo], ids: list[int], crop_pairs: Sequence[tuple[int, int]]
) -> tuple[neighbours.Pairs | None, list[PhotoInfo]]:
    """The verified pairs for grouping (indices into ``infos``) and the photos with each crop's
    original noted for the keeper, from the recorded (crop id, original id) pairs."""
    at = {pid: k for k, pid in enumerate(ids)}
    inside = [(at[c], at[o]) for c, o in crop_pairs if c in at and o in at]
    if not inside:
        return None, infos
    outer_of: dict[int, list[int]] = {}
    for c, o in inside:
        outer_of.setdefault(c, []).append(o)
    # Of several photos a crop lies in, name the largest (then by path): the original.
    crop_of = {infos[c].path: infos[min(os_, key=lambda o: (-infos[o].pixels, infos[o].path))].path
               for c, os_ in outer_of.items()}
    links = crop_links(inside)
    verified = neighbours.Pairs(np.array([a for a, _ in links], np.int64), np.array([b for _, b in links], np.int64),
                                np.zeros(len(links), np.float32))
    return verified, mark_crops(infos, crop_of)


def decide_with_rules(photos: Sequence[PhotoInfo], params: KeeperParams, decider: Decider, rules: Rules,
                      kept: dict[str, str], newcomers: frozenset[str]) -> GroupDecision:
    """The keeper's decision under the promises and the person's rules (``core.rules``): photos
    the person kept stay kept, an upload never costs a library photo, then the rules."""
    fixed = fixed_keeps(photos, rules, kept)
    # Kept photos rank first with the keeper, like photos in a protected folder.
    photos = [dataclasses.replace(p, protected=True) if p.path in fixed and not p.protected else p for p in photos]
    newcomers = frozenset(n for n in newcomers if n not in fixed)
    pool, left_out = keeper_pool(photos, rules, newcomers)
    if not left_out:
        return relabel(decider(photos, params), fixed)
    sub = [photos[k] for k in pool]
    inner = decider(sub, params) if len(sub) > 1 else GroupDecision((sub[0].path,), (Verdict(sub[0].path, True, "best copy"),))
    # Would the keeper have picked a newcomer? Then its reason says so (the person may keep it).
    full = decider(photos, params) if any(photos[k].path in newcomers for k in left_out) else None
    return merge(photos, inner, left_out, fixed, full)


def _promises(index: Index, rows: list[dict[str, Any]]) -> tuple[dict[str, str], frozenset[str]]:
    """For the rows about to be grouped: photos the person chose to keep (path -> why), and
    the newcomers: photos uploaded after the oldest library photo among them arrived."""
    ids = [int(r["id"]) for r in rows]
    kept: dict[str, str] = {}
    path_of = {int(r["id"]): str(r["path"]) for r in rows}
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        kept.update({path_of[int(r[0])]: str(r[1]) for r in index.conn.execute(
            f"SELECT photo_id, why FROM library_keeps WHERE photo_id IN ({','.join('?' * len(chunk))})", chunk)})
    sids = sorted({int(r["session_id"]) for r in rows if r["session_id"] is not None})
    uploads = {int(r[0]) for r in index.conn.execute(
        f"SELECT id FROM sessions WHERE kind = 'upload' AND id IN ({','.join('?' * len(sids))})", sids)} if sids else set()
    is_up = {int(r["id"]): r["session_id"] is not None and int(r["session_id"]) in uploads for r in rows}
    oldest_lib = min((i for i in ids if not is_up[i]), default=None)
    new = frozenset(path_of[i] for i in ids if is_up[i] and oldest_lib is not None and i > oldest_lib)
    return kept, new


def cluster_session(
    index: Index,
    session_id: int,
    lib: Library,
    settings: ClusterSettings,
    *,
    eps: float | None = None,
    decider: Decider = _default_decider,
    now: float | None = None,
    crops: bool = True,
) -> int:
    """Recompute the groups of one session; returns how many groups it has now.

    ``crops`` adds the heavy crops recorded in ``crop_pairs`` (``library_crops``) to the
    session's members and their grouping.
    """
    now = time.time() if now is None else now
    eps = library_eps(index, lib, settings) if eps is None else eps
    params = dataclasses.replace(settings.cluster, eps_min=eps, eps_max=eps)
    split = {int(r[0]) for r in index.conn.execute(
        "SELECT photo_id FROM decisions WHERE session_id = ? AND action = 'split'", (session_id,))}
    own = [int(r[0]) for r in index.conn.execute(
        "SELECT id FROM photos WHERE session_id = ? AND status = 'ok' ORDER BY id", (session_id,))]
    own = [i for i in own if i not in split]
    member_ids: set[int] = set(own)
    if own and len(lib.ids):
        own_arr = np.array(own, np.int64)
        pos = np.searchsorted(lib.ids, own_arr)
        ok = pos < len(lib.ids)
        ok[ok] &= lib.ids[pos[ok]] == own_arr[ok]
        pos = pos[ok]
        pairs = neighbours.query(lib.codes[pos], lib.codes, params.search_radius)
        member_ids.update(int(x) for x in lib.ids[pairs.j])
    crop_pairs: list[tuple[int, int]] = []
    if crops and member_ids:
        # Heavy crops (issue 4) of the members, found when either photo arrived; their own
        # hash neighbours (a crop's resized copies) come along.
        crop_pairs = library_crops.relations(index, member_ids - split)
        extra = {x for p in crop_pairs for x in p} - member_ids - split
        if extra and len(lib.ids):
            ex = np.array(sorted(extra), np.int64)
            pos = np.searchsorted(lib.ids, ex)
            ok = (pos < len(lib.ids))
            ok[ok] &= lib.ids[pos[ok]] == ex[ok]
            member_ids |= extra
            if ok.any():
                near = neighbours.query(lib.codes[pos[ok]], lib.codes, params.search_radius)
                member_ids.update(int(x) for x in lib.ids[near.j])
            crop_pairs = library_crops.relations(index, member_ids - split)
    member_ids |= _pair_partners(index, member_ids) - split
    member_ids |= bursts.partners(index, own) - split  # the other frames of a new photo's burst
    member_ids -= split
    groups: list[GroupDecision] = []
    by_path: dict[str, int] = {}
    if len(member_ids) >= 2:
        ids = sorted(member_ids)
        rows: list[dict[str, Any]] = []
        for k in range(0, len(ids), 500):
            chunk = ids[k : k + 500]
            rows += [dict(r) for r in index.conn.execute(
                "SELECT p.*, f.protected AS folder_protected FROM photos p LEFT JOIN folders f ON f.id = p.folder_id "
                f"WHERE p.id IN ({','.join('?' * len(chunk))}) AND p.status = 'ok'", chunk)]
        infos = [_info(r, bool(r["folder_protected"])) for r in rows]
        by_path = {str(r["path"]): int(r["id"]) for r in rows}
        own_set = set(own)
        row_ids = [int(r["id"]) for r in rows]
        verified, infos = _crop_links(infos, row_ids, crop_pairs)
        # A RAW+JPEG pair is one shot whatever the hash distance of the two developments.
        verified = originals.join_links(verified, originals.pair_links(infos))
        # ... and the frames of a burst, whatever their hash distance.
        verified = originals.join_links(verified, bursts.links(infos, bursts.features_in_index(index, row_ids)))
        grouping = group_photos(infos, params, verified=verified, eps=eps)  # the library's: no k-distances here
        rules = rules_service.effective(index, settings.rules)
        row_of = {str(r["path"]): r for r in rows}
        todo: list[tuple[list[PhotoInfo], dict[str, str], frozenset[str]]] = []
        for g in grouping.groups:
            if not any(by_path[infos[k].path] in own_set for k in g):
                continue  # a group of older photos only: another session's business
            members = [infos[k] for k in g]
            kept, newcomers = _promises(index, [row_of[p.path] for p in members])
            if all(m.path in kept for m in members):
                continue  # the person kept every one of them: never offered again
            todo.append((members, kept, newcomers))

        def decide(job: tuple[list[PhotoInfo], dict[str, str], frozenset[str]]) -> GroupDecision:
            return decide_with_rules(job[0], settings.keeper, decider, rules, job[1], job[2])

        # The keeper's closer look decodes and measures members again: numpy, OpenCV and the
        # decoders let go of the GIL, so groups are decided on a few threads at once.
        if len(todo) > 1 and DECIDE_THREADS > 1:
            with ThreadPoolExecutor(min(DECIDE_THREADS, len(todo)), thread_name_prefix="keeper") as pool:
                groups = list(pool.map(decide, todo))
        else:
            groups = [decide(j) for j in todo]
    with index.tx() as conn:
        old = [int(r[0]) for r in conn.execute("SELECT id FROM groups WHERE session_id = ?", (session_id,))]
        for gid in old:
            conn.execute("DELETE FROM group_members WHERE group_id = ?", (gid,))
        conn.execute("DELETE FROM groups WHERE session_id = ?", (session_id,))
        for pos_g, dec in enumerate(groups):
            new_gid = conn.execute("INSERT INTO groups(session_id, position, created_at, uncertain) VALUES (?, ?, ?, ?)",
                                   (session_id, pos_g, now, int(dec.uncertain))).lastrowid
            for pos_m, v in enumerate(dec.verdicts):
                conn.execute(
                    "INSERT INTO group_members(group_id, photo_id, position, recommended, reason) VALUES (?, ?, ?, ?, ?)",
                    (new_gid, by_path[v.path], pos_m, "keep" if v.keep else "delete", v.reason),
                )
            # Faces the keeper counted (between distinct shots) are the photo's figure from now on.
            conn.executemany("UPDATE photos SET faces = ? WHERE id = ?",
                             [(n, by_path[path]) for path, n in dec.faces if path in by_path])
        conn.execute("UPDATE sessions SET dirty = 0, clustered_at = ?, params_fp = ? WHERE id = ?",
                     (now, settings.fingerprint(), session_id))
    return len(groups)


def _pair_partners(index: Index, member_ids: set[int]) -> set[int]:
    """The other half of each member's RAW+JPEG pair, wherever its session: the RAW of a member
    JPEG or HEIC, the JPEG of a member RAW (same folder and stem; ``originals`` checks the
    capture time). The two developments of a pair need not be hash neighbours."""
    if not member_ids:
        return set()
    raw_formats = tuple(sorted(originals.RAW_FORMATS))
    marks = ",".join("?" * len(raw_formats))
    # Every RAW of the library by (folder, stem): RAWs are few beside JPEGs, and this is one query.
    raws: dict[tuple[str, str], list[int]] = {}
    for r in index.conn.execute(f"SELECT id, path FROM photos INDEXED BY photos_format WHERE format IN ({marks}) AND status = 'ok'",
                                raw_formats):
        folder, _, name = str(r[1]).rpartition("/")
        raws.setdefault((folder, name.rsplit(".", 1)[0].lower()), []).append(int(r[0]))
    if not raws:
        return set()
    ids = sorted(member_ids)
    out: set[int] = set()
    for k in range(0, len(ids), 500):
        chunk = ids[k:k + 500]
        for r in index.conn.execute(
                f"SELECT path, format FROM photos WHERE id IN ({','.join('?' * len(chunk))}) AND status = 'ok'", chunk):
            path = str(r[0])
            folder, _, name = path.rpartition("/")
            out.update(raws.get((folder, name.rsplit(".", 1)[0].lower()), ()))
            if str(r[1]).upper() in originals.RAW_FORMATS:
                stem = path.rsplit(".", 1)[0]
                # Its JPEG: every "stem.<ext>" in the folder, by a range on the path index.
                out.update(int(x[0]) for x in index.conn.execute(
                    "SELECT id FROM photos WHERE path > ? AND path < ? AND status = 'ok' "
                    "AND instr(substr(path, ? + 1), '/') = 0", (stem + ".", stem + "/", len(stem) + 1)))
    return out


def mark_changed_settings(index: Index, settings: ClusterSettings) -> int:
    """Sessions clustered with other thresholds or weights become dirty. Returns how many."""
    with index.tx() as conn:
        cur = conn.execute("UPDATE sessions SET dirty = 1 WHERE clustered_at IS NOT NULL AND params_fp IS NOT ? "
                           "AND dirty = 0", (settings.fingerprint(),))
        return int(cur.rowcount)


def settings_from(cluster: ClusterConfig, keeper: KeeperConfig, rules: RulesConfig | None = None) -> ClusterSettings:
    """Engine parameters from the ``[cluster]`` and ``[keeper]`` config tables."""
    c = clustering.ClusterParams(
        eps_scale=cluster.eps_scale, eps_min=cluster.eps_min, eps_max=cluster.eps_max,
        max_diameter_factor=cluster.max_diameter_factor, fallback_percentile=cluster.fallback_percentile,
    )
    k = KeeperParams(
        resolution_ratio=keeper.resolution_ratio,
        weights=QualityWeights(sharpness=keeper.weight_sharpness, brightness=keeper.weight_brightness,
                               contrast=keeper.weight_contrast, faces=keeper.weight_faces),
        raw_jpeg_pairs=keeper.raw_jpeg_pairs,
    )
    return ClusterSettings(c, k, rules_service.from_config(rules) if rules is not None else Rules())
