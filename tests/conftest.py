from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DUPLIGONE_SHARED", REPO.parent / "shared"))
DEV = SHARED / "datasets" / "dev" / "photos"

if not DEV.is_dir():
    # The suite runs on real photos; without them half of it would silently skip.
    raise pytest.UsageError(
        f"the shared dev corpus is missing at {DEV}: check out the project with shared/ beside it "
        "or point DUPLIGONE_SHARED at a copy"
    )


def dev_photo(rel: str) -> Path:
    path = DEV / rel
    if not path.exists():
        pytest.skip(f"dev corpus not found at {DEV}")
    return path


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    return d


def copy_dev(rel: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dev_photo(rel), dest)
    return dest
