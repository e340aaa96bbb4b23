"""Suite-wide rules: photos come from the repository, CI never skips, no process outlives a test run.

- Photos: drawn at run time by ``tests/synth.py``; the labelled library of ``tests/corpus.py`` is
  built once (cached in the temp directory) before the first test. Nothing is read from
  ``../shared`` (that is for ``bench/``).
- CI mode (``DUPLIGONE_CI=1``, set by ``.ci/run``): a test that would skip because a real part
  (Chromium, Redis, Azurite, SecantusDB, systemd-analyze...) is missing fails instead, with the
  skip's reason: which part, and how to get it. Run plain ``pytest`` to skip them locally.
- Processes: each test process (each xdist worker) is a child subreaper, so daemons that detach
  stay its descendants; at session end any descendant still running fails the run (one line per
  process) and is killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

import pytest

from tests import corpus

CI = os.environ.get("DUPLIGONE_CI", "").strip().lower() in ("1", "true", "yes", "on")
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: descendants that detach are not seen
        pass


def pytest_configure(config: pytest.Config) -> None:
    # Not in the xdist controller (its children are the workers): in the processes running tests.
    if not (config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None)
            and not hasattr(config, "workerinput")):
        _become_subreaper()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if CI and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"CI does not skip: {reason.removeprefix('Skipped: ')}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if CI and report.skipped:  # a whole module skipped (importorskip, allow_module_level)
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI does not skip: {reason.removeprefix('Skipped: ')}"


# --- processes ----------------------------------------------------------------------------------


def _proc_status(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


def descendants(root: int) -> list[int]:
    """Running (not zombie) processes below ``root``."""
    parent: dict[int, int] = {}
    state: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_status(int(entry))
            if st is not None:
                parent[int(entry)], state[int(entry)] = st
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        frontier += kids
        out += [c for c in kids if state.get(c) != "Z"]
    return sorted(out)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


def _reap_zombies() -> None:
    """Collect orphans that were reparented to this subreaper and have exited."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_status(int(entry))
            if st is not None and st[0] == me and st[1] == "Z":
                try:
                    os.waitpid(int(entry), os.WNOHANG)
                except ChildProcessError:
                    pass


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind():  # type: ignore[no-untyped-def]
    """Set up first, torn down last: every other fixture has stopped its processes by then."""
    corpus.build()
    me = os.getpid()
    before = set(descendants(me))  # e.g. a coverage helper: not the tests'
    yield
    deadline = time.monotonic() + 10.0
    left = [p for p in descendants(me) if p not in before]
    while left and time.monotonic() < deadline:  # finalizers may have just sent SIGTERM
        time.sleep(0.2)
        _reap_zombies()
        left = [p for p in descendants(me) if p not in before]
    if not left:
        return
    lines = [f"{p} {_cmdline(p)}" for p in left]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap_zombies()
    pytest.fail(f"{len(left)} process(es) outlived the tests (killed now): " + "; ".join(lines), pytrace=False)


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    return d
