"""The daemon's subcommands of ``dupligone``: run, worker, status, groups, cleanup, check-config."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

CONFIG_HELP = "config file (default: $DUPLIGONE_CONFIG, /etc/dupligone/dupligone.toml, ~/.config/dupligone/dupligone.toml)"


def _load(args: argparse.Namespace) -> Any:
    from dupligoned.adapters.config import find_config, load_config

    return load_config(find_config(args.config))


def _index(cfg: Any) -> Any:
    """The index, or ``IndexDamaged`` naming the config in its hint (one line, exit 2)."""
    from dupligoned.adapters.index import open_index
    from dupligoned.errors import IndexDamaged

    try:
        return open_index(cfg.index_path)
    except IndexDamaged as exc:
        raise IndexDamaged(exc.path, exc.what, exc.backup, cfg.source) from None


def cmd_run(args: argparse.Namespace) -> int:
    from dupligoned.daemon.main import run_daemon

    return run_daemon(args.config)


def cmd_worker(args: argparse.Namespace) -> int:
    from dupligoned.daemon.main import setup_logging
    from dupligoned.daemon.worker import run_worker

    cfg = _load(args)
    setup_logging(cfg.log_level)
    run_worker(cfg, args.workers if args.workers is not None else cfg.queue.workers)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from dupligoned.adapters.config import to_dict, to_toml

    cfg = _load(args)
    if args.json:
        json.dump(to_dict(cfg), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(to_toml(cfg))
    from dupligoned.daemon.main import startup_problems

    problems = startup_problems(cfg)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dupligoned.services.status import status

    cfg = _load(args)
    idx = _index(cfg)
    try:
        st = status(idx, cfg)
    finally:
        idx.close()
    if args.json:
        json.dump(st, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for line in st["notices"]:
        print(f"! {line}")
    print(f"{st['photos']} photos indexed, {st['queued']} waiting for analysis, {st['errors']} could not be read, "
          f"{st['trash']} in trash.")
    print(f"{len(st['sessions'])} sessions, {st['waiting_for_review']} waiting for review:")
    for s in st["sessions"]:
        print(f"  {s['token']}  {s['kind']:<10} {s['state']:<10} {s['photos']} photos, {s['groups']} groups")
    if st.get("mirrors"):
        from dupligoned.cli.mirror_cmds import format_mirror

        print("Mirrors:")
        for m in st["mirrors"]:
            print(format_mirror(m))
    if st["recent_errors"]:
        print("Recent errors:")
        for e in st["recent_errors"][:20]:
            print(f"  {e['path']}: {e['reason']}")
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    from dupligoned.services.review import groups_json

    cfg = _load(args)
    idx = _index(cfg)
    try:
        out = groups_json(idx, args.session)
    finally:
        idx.close()
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{len(out['clusters'])} groups among {out['photos']} photos")
    for c in out["clusters"]:
        print()
        for p in c["members"]:
            mark = "keep  " if p in c["keep"] else "delete"
            print(f"  {mark} {p}\n         {c['reasons'].get(p, '')}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from dupligoned.services.cleanup import run_cleanup

    cfg = _load(args)
    idx = _index(cfg)
    try:
        rep = run_cleanup(idx, cfg, dry_run=args.dry_run)
    finally:
        idx.close()
    if args.json:
        json.dump(rep.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for line in rep.lines():
            print(line)
    return 0


def _not_running(cfg: Any) -> None:
    from dupligoned.adapters.state import is_locked
    from dupligoned.errors import UsageError

    pid = is_locked(cfg.state_dir)
    if pid:
        raise UsageError(f"dupligoned (pid {pid}) is running on {cfg.state_dir}; stop it first")


def cmd_index_restore(args: argparse.Namespace) -> int:
    from dupligoned.adapters import index
    from dupligoned.errors import UsageError

    cfg = _load(args)
    _not_running(cfg)
    src = args.backup or str(cfg.index_backup_path)
    import os

    if not os.path.exists(src):
        raise UsageError(f"no backup at {src}; rebuild the index with `dupligone index rebuild --config {cfg.source}`")
    aside = index.restore(cfg.index_path, src)
    print(f"restored {cfg.index_path} from {src}" + (f"; the damaged index is kept as {aside}" if aside != cfg.index_path else ""))
    print("start the daemon: it looks for what changed since the backup (decisions made after it are lost)")
    return 0


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    from dupligoned.adapters import index

    cfg = _load(args)
    _not_running(cfg)
    aside, kept = index.rebuild(cfg.index_path)
    if aside is not None:
        print(f"the damaged index is kept as {aside}")
    print(f"new index {cfg.index_path}: kept " + ", ".join(f"{n} {t}" for t, n in kept.items() if n) if any(kept.values())
          else f"new, empty index {cfg.index_path}")
    print("start the daemon: it finds the libraries' photos and analyses again those the index lost")
    return 0


def add_daemon_commands(sub: Any) -> None:
    sp = sub.add_parser("run", help="run the daemon in the foreground (same as `dupligoned`)")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("worker", help="run analysis workers only (another machine sharing the Redis queue)")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--workers", type=int, default=None, help="processes (default: queue.workers)")
    sp.set_defaults(func=cmd_worker)

    sp = sub.add_parser("check-config", help="check a config file and print the effective config, secrets masked")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    sp.set_defaults(func=cmd_check_config)

    sp = sub.add_parser("status", help="queue depth, photos indexed, errors, sessions waiting for review")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("groups", help="the current groups of duplicates (like `scan --json`)")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--session", metavar="TOKEN", default=None, help="only this session's groups")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_groups)

    sp = sub.add_parser("cleanup", help="purge old trash, old reviewed sessions, stale thumbnails and vanished files")
    sp.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sp.add_argument("--dry-run", action="store_true", help="show what would be removed; remove nothing")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_cleanup)

    sp = sub.add_parser("index", help="repair a damaged index: restore the last backup, or rebuild it")
    isub = sp.add_subparsers(dest="index_command", required=True)
    ip = isub.add_parser("restore", help="put the last backup (state_dir/index.backup.db) in place of the index")
    ip.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    ip.add_argument("--backup", metavar="FILE", default=None, help="another backup file to restore")
    ip.set_defaults(func=cmd_index_restore)
    ip = isub.add_parser("rebuild", help="a new index keeping every row of the old one that can be read; "
                                         "the daemon analyses the rest again")
    ip.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    ip.set_defaults(func=cmd_index_rebuild)

    from dupligoned.cli.mirror_cmds import add_mirror_commands

    add_mirror_commands(sub)
