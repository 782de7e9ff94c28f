"""Fixtures for the neural tests: a tiny NeRF-synthetic-style dataset written on the fly."""
import json
import math

import imageio.v3 as iio
import numpy as np


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


import pytest  # noqa: E402


@pytest.fixture
def tiny_dataset():
    """``write_tiny_dataset(root, n=..., ...)`` (see above)."""
    return write_tiny_dataset
