"""The config loader, the sample files, and ``check-config``."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dupligoned.adapters.config import (
    Config,
    describe,
    find_config,
    load_config,
    parse_config,
    to_dict,
)
from dupligoned.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "dupligone.example.toml"
COMMENTED_SETTING = re.compile(r"^# (\[[a-z_.]+\]|[a-z_]+ = .*)$")


def _flatten(raw: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in raw.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out |= _flatten(x, f"{prefix}{k}[].")
        else:
            out.add(prefix + k)
    return out


def _uncommented(text: str) -> str:
    """The example with its commented-out settings switched on."""
    return "\n".join(line[2:] if COMMENTED_SETTING.match(line) else line for line in text.splitlines())


def test_example_documents_every_setting_and_nothing_else() -> None:
    raw = tomllib.loads(_uncommented(EXAMPLE.read_text()))
    documented = _flatten(raw)
    known = {key for key, *_ in describe()}
    assert documented == known, f"missing from example: {known - documented}; unknown in example: {documented - known}"
    parse_config(raw, REPO)  # and the loader accepts every one of them


def test_example_shows_the_defaults() -> None:
    cfg = load_config(EXAMPLE)
    default = parse_config({}, REPO)
    for f in dataclasses.fields(Config):
        if f.name in ("libraries", "source"):
            continue
        assert getattr(cfg, f.name) == getattr(default, f.name), f"example's {f.name} is not the default"
    assert [lib.path for lib in cfg.libraries] == [str(REPO / "photos")]
    assert cfg.queue.redis_url is None and cfg.azure is None and cfg.mongo is None


def test_every_setting_has_help() -> None:
    for key, _default, help_text, _secret in describe():
        assert help_text.strip(), f"{key} has no help text"


@pytest.mark.parametrize("sample", sorted((REPO / "config").glob("*.toml")), ids=lambda p: p.name)
def test_samples_load(sample: Path) -> None:
    cfg = load_config(sample)
    assert cfg.libraries


def test_every_problem_at_once_with_dotted_keys() -> None:
    raw = {
        "web": {"port": 70000, "hots": "x"},
        "libraries": [{"path": "a", "mode": "sometimes"}, {"protected": "yes"}],
        "queue": {"redis_url": "http://example", "workers": -1},
        "watch": {"stable_s": "soon"},
        "colour": "blue",
        "cluster": {"eps_min": 12.0, "eps_max": 8.0},
    }
    with pytest.raises(ConfigError) as ei:
        parse_config(raw, "/tmp")
    probs = ei.value.problems
    text = "\n".join(probs)
    assert "At 'web.port': must be 1-65535 (got 70000)" in probs
    assert "At 'web.hots': unknown key; did you mean 'host'?" in probs
    assert "At 'libraries[0].mode'" in text and "'auto', 'native', 'poll'" in text
    assert "At 'libraries[1].protected': must be true or false" in text
    assert "At 'libraries[1].path': is required" in text
    assert "At 'queue.redis_url'" in text and "At 'queue.workers'" in text
    assert "At 'watch.stable_s': must be a number" in text
    assert "At 'colour': unknown key" in text
    assert "At 'cluster.eps_min': must not exceed cluster.eps_max" in text
    assert len(probs) == 10


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.toml"
    f.write_text('state_dir = "st"\n[[libraries]]\npath = "../pics"\n[trash]\ndir = "bin"\n')
    cfg = load_config(f)
    assert cfg.state_dir == str(tmp_path / "sub" / "st")
    assert cfg.libraries[0].path == str(tmp_path / "pics")
    assert cfg.trash.dir == str(tmp_path / "sub" / "bin")
    assert cfg.index_path == tmp_path / "sub" / "st" / "index.db"


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[web\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        find_config(str(tmp_path / "nope.toml"))


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_cfg = tmp_path / "env.toml"
    env_cfg.write_text("")
    user = tmp_path / "xdg" / "dupligone" / "dupligone.toml"
    user.parent.mkdir(parents=True)
    user.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DUPLIGONE_CONFIG", str(env_cfg))
    assert find_config(str(user)) == user  # --config first
    if not Path("/etc/dupligone/dupligone.toml").exists():
        assert find_config(None) == env_cfg
        monkeypatch.delenv("DUPLIGONE_CONFIG")
        assert find_config(None) == user
        user.unlink()
        with pytest.raises(ConfigError, match="no config file found"):
            find_config(None)


def test_secrets_are_masked(tmp_path: Path) -> None:
    cfg = parse_config({
        "libraries": [{"path": "x"}],
        "queue": {"redis_url": "redis://:hunter2@nas:6379/0"},
        "web": {"password_hash": "scrypt$abc$def"},
        "azure": {"connection_string": "AccountKey=s3cr3t"},
        "mongo": {"uri": "mongodb://me:pa55@db/x"},
    }, tmp_path)
    shown = json.dumps(to_dict(cfg))
    for secret in ("hunter2", "scrypt$abc$def", "s3cr3t", "pa55"):
        assert secret not in shown
    assert "redis://:***@nas:6379/0" in shown and "mongodb://me:***@db/x" in shown
    assert to_dict(cfg, mask=False)["queue"]["redis_url"] == "redis://:hunter2@nas:6379/0"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    from tests.daemon_support import env

    return subprocess.run([sys.executable, "-m", "dupligoned.cli.main", *args], capture_output=True, text=True, timeout=60,
                          env=env())


def test_check_config_cli(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    f = tmp_path / "c.toml"
    f.write_text('state_dir = "state"\n[[libraries]]\npath = "photos"\n[queue]\nredis_url = "redis://:hunter2@h:1/0"\n')
    r = _cli("check-config", "--config", str(f))
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout and "redis://:***@h:1/0" in r.stdout
    assert tomllib.loads(r.stdout)["libraries"][0]["path"] == str(tmp_path / "photos")
    f.write_text('[web]\nport = 0\nhost = 1\n')
    r = _cli("check-config", "--config", str(f))
    assert r.returncode == 2
    assert "At 'web.port': must be 1-65535 (got 0)" in r.stderr and "At 'web.host': must be a string" in r.stderr
