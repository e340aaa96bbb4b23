#!/usr/bin/env python3
"""Accuracy: DupliGone and its peers on one labelled corpus, in one run, as one table.

    python bench/accuracy.py [--corpus DIR|crops] [--peers czkawka,imagededup-phash,...] [--json]

Runs ``dupligone scan CORPUS/photos --json`` and each peer (``../shared/peers/run_peer.py`` in
the peers' venv) on the same folder, one after the other, scores every result with
``../shared/eval/score.py`` and prints pair precision, recall, F1, recall by kind, lost photos,
best-shot accuracy and wall seconds (whole process, start-up included). ``--corpus crops`` is the
heavy-crop corpus of ``../shared/datasets/make_crops.py``, made once under the cache folder.
Peers only group; they choose no keeper, so their best-shot column is empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, cached_corpus, load_score, require_shared, run_ours, run_peer  # noqa: E402

DEFAULT_PEERS = "czkawka,imagededup-phash,imagededup-dhash,findimagedupes"


def resolve_corpus(arg: str | None) -> Path:
    if arg is None:
        return SHARED / "datasets" / "dev"
    if arg == "crops":
        return cached_corpus("crops", "make_crops.py")
    path = Path(arg)
    if not (path / "truth.json").exists() or not (path / "photos").is_dir():
        raise SystemExit(f"{path}: not a corpus (needs photos/ and truth.json)")
    return path


def table(rows: list[dict[str, Any]]) -> str:
    kinds = sorted({k for r in rows for k in r["recall_by_kind"]})
    head = ["tool", "P", "R", "F1", *kinds, "lost", "best", "seconds"]
    lines = []
    for r in rows:
        best = r["best_accuracy"]
        cells = [r["tool"], f"{r['pair_precision']:.3f}", f"{r['pair_recall']:.3f}", f"{r['pair_f1']:.3f}"]
        cells += [f"{r['recall_by_kind'][k]:.2f}" if k in r["recall_by_kind"] else "-" for k in kinds]
        cells += [str(r["lost"]), "-" if best is None or not r["keeps"] else f"{best:.3f}", f"{r['seconds']:.1f}"]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def main(argv: list[str] | None = None) -> int:
    require_shared("datasets", "dev")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="a labelled corpus folder, or 'crops' (default: shared dev)")
    ap.add_argument("--peers", default=DEFAULT_PEERS, help="comma-separated peers ('' for none)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    corpus = resolve_corpus(args.corpus)
    photos = corpus / "photos"
    score = load_score()
    rows: list[dict[str, Any]] = []

    secs, result = run_ours(photos)
    rows.append({"tool": "dupligone", "seconds": secs, "keeps": True, **score(str(corpus), result)})
    for peer in [p for p in args.peers.split(",") if p]:
        print(f"running {peer} ...", file=sys.stderr)
        secs, result = run_peer(peer, photos)
        rows.append({"tool": peer, "seconds": secs, "keeps": False, **score(str(corpus), result)})

    if args.json:
        print(json.dumps({"corpus": str(corpus), "rows": rows}))
    else:
        n = rows[0]["photos"]
        print(f"corpus {corpus} ({n} photos); seconds = wall time of the whole process")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
