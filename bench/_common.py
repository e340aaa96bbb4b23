"""What the benchmarks share: where the shared data and the peers live, and running a command timed.

The paths default to this machine's layout (see bench/README.md) and can be moved with
environment variables: ``DUPLIGONE_SHARED`` (the shared folder holding datasets/, eval/ and
peers/), ``DUPLIGONE_PEERS_PYTHON`` (the peers' virtual environment's python) and
``DUPLIGONE_BENCH_CACHE`` (where generated corpora are kept between runs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DUPLIGONE_SHARED", REPO.parent / "shared"))
PEERS_PYTHON = Path(os.environ.get("DUPLIGONE_PEERS_PYTHON", "/tmp/peers/venv/bin/python"))
CACHE = Path(os.environ.get("DUPLIGONE_BENCH_CACHE", "/tmp/dupligone-bench"))
RUN_PEER = SHARED / "peers" / "run_peer.py"
HOW_TO_GET_SHARED = "put the project's shared/ folder beside the repo or point DUPLIGONE_SHARED at it"


def require_shared(*parts: str) -> Path:
    """``SHARED/parts``; if it is missing, say so in one line and exit 2 (benchmarks only: the
    test suite needs nothing outside the repository)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        print(f"{Path(sys.argv[0]).name}: needs the shared data at {path}, which is missing: {HOW_TO_GET_SHARED}",
              file=sys.stderr)
        raise SystemExit(2)
    return path
PEER_STUB = SHARED / "peers" / "stub"


def dupligone_command() -> list[str]:
    """The installed ``dupligone`` console script, else the module run by this python.

    The script beside this python comes first: a version manager's shim on PATH (pyenv's is a
    bash script that runs ``pyenv exec``) would add ~40 ms to every run that is not ours.
    """
    beside = Path(sys.executable).parent / "dupligone"
    exe = str(beside) if beside.is_file() else shutil.which("dupligone")
    return [exe] if exe else [sys.executable, "-m", "dupligoned.cli.main"]


def run_timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``cmd``; return (wall seconds, stdout). Raises SystemExit with stderr on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return secs, proc.stdout


def run_ours(folder: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    """``dupligone scan FOLDER --json -q``: wall seconds (start-up included) and its JSON."""
    secs, out = run_timed([*dupligone_command(), "scan", str(folder), "--json", "-q", *extra])
    return secs, json.loads(out)


def run_peer(peer: str, folder: Path, param: str | None = None) -> tuple[float, dict[str, Any]]:
    """One peer through the shared ``run_peer.py`` in the peers' venv: wall seconds and its JSON.

    The wall time is the whole process (interpreter and library start-up included), as for ours;
    the peer's own ``seconds`` (its search alone) stays in the returned JSON.
    """
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"no peers venv at {PEERS_PYTHON}: see the set-up at the top of bench/README.md")
    env = dict(os.environ, PYTHONPATH=str(PEER_STUB))
    cmd = [str(PEERS_PYTHON), str(RUN_PEER), peer, str(folder)]
    if param is not None:
        cmd.append(param)
    secs, out = run_timed(cmd, env=env)
    return secs, json.loads(out)


def load_score() -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The shared scorer's ``score(corpus, result)`` function."""
    path = SHARED / "eval" / "score.py"
    spec = importlib.util.spec_from_file_location("dupligone_shared_score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fn: Callable[[str, dict[str, Any]], dict[str, Any]] = mod.score
    return fn


def cached_corpus(name: str, maker: str, *args: str) -> Path:
    """A generated corpus under the cache, made once by a shared ``datasets/`` script."""
    out = CACHE / name
    done = out / ".complete"
    if not done.exists():
        if out.exists():
            shutil.rmtree(out)  # a half-made one from an interrupted run
        out.parent.mkdir(parents=True, exist_ok=True)
        print(f"making {out} with {maker} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, str(SHARED / "datasets" / maker), str(out), *args], check=True,
                       stdout=sys.stderr)
        done.touch()
    return out
