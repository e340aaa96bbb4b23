"""``dupligone``: the command line."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence

from dupligoned import __version__
from dupligoned.errors import DupliGoneError, UsageError


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _n(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def cmd_scan(args: argparse.Namespace) -> int:
    # One process per core already: OpenBLAS's thread pool (started when numpy is imported,
    # ~50 ms of CPU) would only contend with the workers. Set before numpy is first imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from dupligoned.services.scan import scan

    for p in list(args.paths) + list(args.protect):
        if not os.path.isdir(p):
            raise UsageError(f"not a folder: {p}")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    bar = None
    # A progress bar only for a person at a terminal: never into a pipe, a log or a file.
    if not args.quiet and sys.stderr.isatty() and (sys.stdout.isatty() or args.json):
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: the scan may then fork its workers
        bar = tqdm(total=0, unit="photo", file=sys.stderr, desc="analysing", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    roots = [os.path.abspath(p) for p in args.paths]
    result = scan(roots, workers=args.workers, protect=args.protect, progress=progress)
    if bar is not None:
        bar.close()
    if args.json:
        out = result.to_json(reasons=args.reasons)
        json.dump(out, sys.stdout, indent=None if args.compact else 1)
        sys.stdout.write("\n")
        return 0
    by_path = {p.path: p for p in result.photos}
    to_free = sum(by_path[d].size_bytes for g in result.groups for d in g.delete)
    n_delete = sum(len(g.delete) for g in result.groups)
    for i, g in enumerate(result.groups, 1):
        freed = sum(by_path[d].size_bytes for d in g.delete)
        print(f"Group {i} of {len(result.groups)}: {len(g.verdicts)} photos, {len(g.delete)} could go "
              f"(frees {_human_bytes(freed)})")
        # The keeper first, then the copies: what stays, then what could go and why.
        for v in sorted(g.verdicts, key=lambda v: not v.keep):
            p = by_path.get(v.path)
            size = f"  ({p.width}×{p.height}, {_human_bytes(p.size_bytes)})" if p else ""
            print(f"  {'KEEP  ' if v.keep else 'delete'}  {v.path}{size}\n          {v.reason}")
        print()
    if result.errors:
        print("Could not read:")
        for e in result.errors:
            print(f"  {e.path}: {e.reason}")
        print()
    print(f"Summary: {len(result.photos)} photos analysed, {len(result.errors)} could not be read; "
          f"{_n(len(result.groups), 'group')} of duplicates: {_n(len(result.groups), 'photo')} to keep, "
          f"{_n(n_delete, 'copy', 'copies')} could go, "
          f"freeing {_human_bytes(to_free)}. Nothing was changed.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dupligone", description="Find and remove duplicate photos.")
    ap.add_argument("--version", action="version", version=f"dupligone {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("scan", help="group the duplicates under folders once (changes no file)")
    sp.add_argument("paths", nargs="+", metavar="PATH", help="folders to scan, recursively")
    sp.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    sp.add_argument("--reasons", action="store_true", help="with --json: add each photo's reason")
    sp.add_argument("--compact", action="store_true", help=argparse.SUPPRESS)
    sp.add_argument("--workers", type=int, default=None, help="processes to use (default: every core)")
    sp.add_argument("--protect", action="append", default=[], metavar="PATH",
                    help="a folder whose photos are never recommended for deletion (repeatable)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_scan)
    from dupligoned.cli.daemon_cmds import add_daemon_commands

    add_daemon_commands(sub)
    from dupligoned.cli.web_cmds import add_web_commands

    add_web_commands(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DupliGoneError as exc:
        print(f"dupligone: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        from dupligoned.adapters.index import is_damage

        if not is_damage(exc):
            raise
        print(f"dupligone: the index is damaged ({exc}); restore the last backup with `dupligone index restore` "
              "or rebuild it with `dupligone index rebuild`", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The ``dupligone`` console script: ``main``, then exit.

    A scan changes nothing and has shut its workers down by the time it returns, so once its
    output is flushed the process ends at once instead of tearing down the interpreter (numpy,
    OpenCV, faiss: ~45 ms, a twentieth of a 60-photo scan). Every other command exits
    normally (they may hold an index open).
    """
    argv = sys.argv[1:]
    rc = main(argv)
    if argv[:1] == ["scan"]:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: nothing more can be said
            rc = rc or 1
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    run()
