"""The systemd unit is valid (``systemd-analyze verify``) and says what the README promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "dupligone.service"


def _settings() -> dict[str, str]:
    out = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def test_unit_runs_the_daemon_hardened() -> None:
    s = _settings()
    assert s["ExecStart"].split()[0].endswith("/dupligoned") and "--config" in s["ExecStart"]
    assert s["KillSignal"] == "SIGINT" and int(s["TimeoutStopSec"]) >= 20
    assert s["Restart"] == "on-failure" and s["StateDirectory"] == "dupligone"
    for key in ("User", "ProtectSystem", "ReadWritePaths", "NoNewPrivileges", "PrivateTmp", "Nice", "IOSchedulingClass"):
        assert key in s, key
    # every setting is explained by a comment somewhere above it
    lines = UNIT.read_text().splitlines()
    assert sum(1 for ln in lines if ln.startswith("#")) >= 10


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed: apt-get install systemd (.ci/run does)")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this machine's dupligoned.
    exe = shutil.which("dupligoned") or "/bin/true"
    unit = tmp_path / "dupligone.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/dupligoned", exe))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys and bad values ("..., ignoring."): read what it says
    # about this file, line by line.
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if "dupligone.service:" in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
