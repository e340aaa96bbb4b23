"""Real mirror servers for the tests, on 127.0.0.1: Azurite (npm), SecantusDB (in-process MongoDB
wire protocol over WiredTiger) and Debian's redis-server. Each can be stopped and started again on
the same port and data, to play an outage."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_ACCOUNT = "devstoreaccount1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def azurite_bin() -> str:
    exe = os.environ.get("AZURITE_BIN") or str(Path.home() / ".cache/dupligone-azurite/node_modules/.bin/azurite-blob")
    if not os.access(exe, os.X_OK):
        pytest.skip(f"Azurite is not installed at {exe}: npm install azurite@3.35.0 (.ci/run does, and sets AZURITE_BIN)")
    return exe


class Azurite:
    """``azurite-blob`` on a free port, data in ``location``."""

    def __init__(self, location: Path) -> None:
        self.exe = azurite_bin()
        self.location = location
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def start(self) -> Azurite:
        self.location.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.exe, "--skipApiVersionCheck", "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(self.location), "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_port(self.port)
        except BaseException:
            self.stop()  # never leave it running
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def store(self, container: str) -> Any:
        from dupligoned.adapters.azure_blob import BlobStore

        return BlobStore(self.connection_string, container)


class Mongo:
    """A SecantusDB server in this process, on a fixed port once started."""

    def __init__(self, location: Path) -> None:
        try:
            import secantus  # noqa: F401
        except ImportError:
            pytest.skip("SecantusDB is not installed (pip install SecantusDB==0.7.0b3; the test extra has it)")
        self.location = location
        self.port = 0
        self.server: Any = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> Mongo:
        from secantus import SecantusDBServer

        self.location.mkdir(parents=True, exist_ok=True)
        self.server = SecantusDBServer(port=self.port, storage_path=str(self.location))
        self.server.start()
        self.port = int(self.server.port)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def db(self, name: str) -> Any:
        import pymongo

        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000)[name]


def redis_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
    except BaseException:
        proc.kill()  # never leave it running
        proc.wait(10)
        raise
    return proc, f"redis://127.0.0.1:{port}/0"
