"""Several machines: a second ``dupligone worker`` on the shared Redis queue analyses part of a
batch; results come back to the one daemon, complete and exactly once. And the optional
backends: nothing of them is imported when they are off, a missing extra is named."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.daemon_support import Daemon, copy_photo, env, rows, settled, singletons, wait_for, write_config
from tests.mirror_support import redis_server

pytestmark = pytest.mark.timeout(240)


def test_second_worker_on_redis_takes_part_of_the_batch(tmp_path: Path) -> None:
    redis_proc, url = redis_server(tmp_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    cfg = write_config(tmp_path, [lib], queue={"redis_url": url, "workers": 1}, web={"enabled": False})
    # The other machine: same library path (the NAS), same Redis, its own state folder and no
    # index; debug logging names every task it runs.
    other = tmp_path / "other-machine"
    other.mkdir()
    other_cfg = other / "dupligone.toml"
    other_cfg.write_text(cfg.read_text().replace(f'state_dir = "{tmp_path / "state"}"',
                                                 f'state_dir = "{other / "state"}"\nlog_level = "debug"'))
    out = open(other / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "dupligoned.cli.main", "worker", "--config", str(other_cfg),
                               "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env(),
                              start_new_session=True)  # its own process group: killed whole if it hangs
    picks = singletons(24)
    try:
        with Daemon(cfg):
            for i, rel in enumerate(picks):
                copy_photo(rel, lib, f"w{i:02d}{Path(rel).suffix}")
            st = wait_for(lambda: (s := settled(cfg)) and s["photos"] + s["errors"] == len(picks) and s, 150,
                          "the batch to be analysed")
            assert st["errors"] == 0
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        out.close()
        redis_proc.terminate()
        redis_proc.wait(10)
    log = (other / "worker.log").read_text(errors="replace")
    ran_there = len(re.findall(r"Executing dupligoned\.daemon\.queue\.analyse", log))
    assert 0 < ran_there < len(picks), log[-2000:]
    # Exactly once: one result written per photo, whichever machine analysed it.
    assert [r[0] for r in rows(cfg, "SELECT analyses FROM photos ORDER BY id")] == [1] * len(picks)
    assert not (other / "state" / "index.db").exists()  # the worker never touches an index


SCRIPT = textwrap.dedent("""
    import json, sys
    blocked = set(sys.argv[2].split(",")) if len(sys.argv) > 2 and sys.argv[2] else set()

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"blocked {name}")
            return None

    sys.meta_path.insert(0, Block())
    from dupligoned.adapters.config import load_config
    from dupligoned.adapters.index import open_index
    from dupligoned.daemon.mirror_tasks import start_mirrors
    from dupligoned.errors import DupliGoneError
    cfg = load_config(sys.argv[1])
    index = open_index(cfg.index_path)
    try:
        runner = start_mirrors(cfg, index)
        runner.tick()
        runner.stop()
        err = None
    except DupliGoneError as exc:
        err = str(exc)
    # (redis is left out: huey itself tries ``import redis`` at import, whatever the config.)
    loaded = sorted(m for m in ("azure", "pymongo") if m in sys.modules)
    print(json.dumps({"loaded": loaded, "error": err}))
""")


def _run(cfg: Path, blocked: str = "") -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg), blocked], capture_output=True, text=True,
                       timeout=60, env=env())
    assert r.returncode == 0, r.stderr
    out: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_backends_off_import_nothing_and_a_missing_extra_is_named(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    off = write_config(tmp_path, [lib])
    assert _run(off) == {"loaded": [], "error": None}
    on = tmp_path / "on.toml"
    on.write_text(off.read_text() + '[azure]\nconnection_string = "UseDevelopmentStorage=true"\n'
                  '[mongo]\nuri = "mongodb://127.0.0.1:1"\n')
    got = _run(on, "azure")
    assert "pip install 'dupligone[azure]'" in str(got["error"])
    got = _run(on, "pymongo")
    assert "pip install 'dupligone[mongo]'" in str(got["error"])
    # With the extras installed the backends load, only then.
    assert set(_run(on)["loaded"]) >= {"azure", "pymongo"}  # type: ignore[arg-type]
    r = subprocess.run([sys.executable, "-m", "dupligoned.cli.main", "mirror", "resync", "--config", str(off)],
                       capture_output=True, text=True, timeout=60, env=env())
    assert r.returncode == 2 and "no mirror is configured" in r.stderr
