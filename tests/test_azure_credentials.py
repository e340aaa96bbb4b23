"""Azure credentials come from the config, a file it names, or an environment variable it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from dupligoned.adapters.azure_blob import read_connection_string
from dupligoned.adapters.config import parse_config
from dupligoned.errors import ConfigError

CS = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net"


def test_connection_string_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DG_TEST_AZURE", CS + "\n")
    assert read_connection_string(None, None, "DG_TEST_AZURE") == CS
    monkeypatch.delenv("DG_TEST_AZURE")
    with pytest.raises(ConfigError) as err:
        read_connection_string(None, None, "DG_TEST_AZURE")
    assert "azure.connection_string_env" in str(err.value) and "DG_TEST_AZURE" in str(err.value)


def test_connection_string_from_a_file_and_the_config_takes_the_env_key(tmp_path: Path) -> None:
    secret = tmp_path / "azure.secret"
    secret.write_text(CS + "\n")
    assert read_connection_string(None, str(secret)) == CS
    cfg = parse_config({"state_dir": str(tmp_path), "azure": {"connection_string_env": "AZ"}}, base_dir=tmp_path)
    assert cfg.azure is not None and cfg.azure.connection_string_env == "AZ"
    with pytest.raises(ConfigError) as err:
        parse_config({"state_dir": str(tmp_path), "azure": {"container": "x"}}, base_dir=tmp_path)
    assert "azure.connection_string" in str(err.value)
