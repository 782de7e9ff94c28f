"""Shared test set-up: seeded RNG per test, and where the shared test data lives."""
import os
from pathlib import Path

import pytest
import torch

# Real meshes and datasets: ../shared/data beside the checkout (as CI lays it out),
# or wherever LUMIGRAD_TEST_DATA points.
SHARED_DATA = Path(os.environ.get("LUMIGRAD_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_rng():
    torch.manual_seed(0)
    yield
