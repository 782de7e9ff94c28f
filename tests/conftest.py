"""Shared test set-up: seeded RNG per test, and where the test data lives.

Two kinds of data:

- ``TEST_DATA`` (tests/data/): small files carried by the repository; the default
  run may use them freely.
- ``SHARED_DATA``: large real datasets, *not* in the repository. Found at
  ``$LUMIGRAD_TEST_DATA`` if set, else ``../shared/data`` beside the checkout (as
  CI lays it out). Tests that need it call :func:`shared_file`, which skips with
  a reason when the file is absent, and should mostly be ``slow``.
"""
import os
from pathlib import Path

import pytest
import torch

TEST_DATA = Path(__file__).resolve().parent / "data"


def shared_data_dir(environ=os.environ, tests_dir: Path = Path(__file__).resolve().parent) -> Path:
    """The shared-dataset folder: ``$LUMIGRAD_TEST_DATA``, else ``<checkout>/../shared/data``."""
    env = environ.get("LUMIGRAD_TEST_DATA")
    if env:
        return Path(env)
    return tests_dir.parent.parent / "shared" / "data"


SHARED_DATA = shared_data_dir()


def shared_file(relpath: str) -> Path:
    """``SHARED_DATA / relpath`` if it exists, else skip the calling test with a reason."""
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"shared test data {relpath} not found under {SHARED_DATA} (set LUMIGRAD_TEST_DATA)")
    return path


@pytest.fixture(autouse=True)
def _seed_rng():
    torch.manual_seed(0)
    yield
