"""Shared test set-up: every test starts from the same random state (no flaky draws)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_rng():
    torch.manual_seed(0)
    yield
