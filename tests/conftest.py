"""Shared test set-up: seeded RNG per test, and where the test data lives.

Two kinds of data:

- ``TEST_DATA`` (tests/data/): small files carried by the repository; the default
  run may use them freely.
- ``SHARED_DATA``: large real datasets, *not* in the repository. Found at
  ``$LUMIGRAD_TEST_DATA`` if set, else ``../shared/data`` beside the checkout (as
  CI lays it out). Tests that need it call :func:`shared_file`, which skips with
  a reason when the file is absent, and should mostly be ``slow``.
"""
import json
import math
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import pytest

# Sleeping OpenMP workers, as lumigrad sets when imported before torch (docs/threads.md); here torch
# comes first, and OpenMP reads the policy once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

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


# --- Neural tests: a tiny NeRF-synthetic-style dataset written on the fly. ---



def write_tiny_dataset(root, n=6, size=16, split="train", camera_angle_x=0.69, sizes=None, drop_fov=False):
    root.mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(exist_ok=True)
    frames = []
    for i in range(n):
        az = 2 * math.pi * i / n
        eye = np.array([4 * math.cos(az), 4 * math.sin(az), 1.5])
        fwd = -eye / np.linalg.norm(eye)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -fwd, eye
        s = sizes[i] if sizes else size
        yy, xx = np.mgrid[0:s, 0:s]
        r2 = ((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (s / 4) ** 2
        a = (r2 < 1).astype(np.float32)
        img = np.stack([xx / s, yy / s, np.full_like(a, 0.5), a], -1)
        iio.imwrite(root / split / f"r_{i}.png", (img * 255).astype(np.uint8))
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
    meta = {"frames": frames}
    if not drop_fov:
        meta["camera_angle_x"] = camera_angle_x
    (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return root




@pytest.fixture
def tiny_dataset():
    """``write_tiny_dataset(root, n=..., ...)`` (see above)."""
    return write_tiny_dataset
