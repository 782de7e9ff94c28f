"""NeRF-synthetic-style datasets (``transforms_{train,val,test}.json`` + images) for the nerf and splat tasks."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lumigrad.scene.camera import Camera
from lumigrad.scene.transforms_json import read_transforms_json

__all__ = ["Views", "load_split", "load_dataset", "orbit_cameras"]

log = logging.getLogger(__name__)


class Views(NamedTuple):
    """Posed images of one split."""

    camera: Camera  # batched, B views, OpenCV convention
    images: torch.Tensor  # [B, H, W, 4] float32 RGBA in [0, 1] (alpha 1 for RGB files)
    names: list[str]


def load_split(root, split: str) -> Views:
    """Read ``root/transforms_{split}.json`` and its images.

    Raises:
        FileNotFoundError: the folder, the JSON or a frame's image is missing (named).
        ValueError: a camera has no intrinsics, or an image's size differs from the
            camera's / the other frames' (the file is named).
    """
    import imageio.v3 as iio

    fn = "load_split"
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{fn}(): no such dataset folder: {root}")
    path = root / f"transforms_{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{fn}(): {root} has no transforms_{split}.json")
    cams = read_transforms_json(path)
    W, H = cams.camera.width, cams.camera.height
    imgs = []
    for i, p in enumerate(cams.image_paths):
        if not p.is_file():
            raise FileNotFoundError(f"{fn}(): {path} frame {i}: image {p} is missing")
        try:
            a = iio.imread(p)
        except Exception as e:  # imageio raises many types for a corrupt file
            raise ValueError(f"{fn}(): {path} frame {i}: cannot read image {p} ({e})") from None
        if a.ndim == 2:
            a = a[..., None].repeat(3, -1)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise ValueError(f"{fn}(): {p} must be an RGB or RGBA image, got shape {a.shape}")
        if a.shape[:2] != (H, W):
            raise ValueError(f"{fn}(): {p} is {a.shape[1]}x{a.shape[0]} but {path} says {W}x{H} "
                             "(all images of a split must share the camera's size)")
        scale = 65535.0 if a.dtype == np.uint16 else 255.0
        a = torch.from_numpy(a.astype(np.float32) / scale)
        if a.shape[2] == 3:
            a = torch.cat([a, torch.ones_like(a[..., :1])], -1)
        imgs.append(a)
    return Views(cams.camera, torch.stack(imgs), [p.stem for p in cams.image_paths])


def _subset(v: Views, idx: list[int]) -> Views:
    return Views(v.camera[torch.tensor(idx)], v.images[idx], [v.names[i] for i in idx])


def load_dataset(root, holdout_every: int = 8) -> tuple[Views, Views, str]:
    """``(train, eval, eval_source)``: the val (else test) split, or every ``holdout_every``-th train frame held out."""
    root = Path(root)
    train = load_split(root, "train")
    for split in ("val", "test"):
        if (root / f"transforms_{split}.json").is_file():
            return train, load_split(root, split), split
    n = train.images.shape[0]
    if n < 2:
        raise ValueError(f"load_dataset(): {root} has one training view and no val/test split; need at least 2")
    held = list(range(0, n, holdout_every))
    keep = [i for i in range(n) if i % holdout_every != 0]
    log.info("load_dataset(): %s has no val/test split; holding out %d of %d train views", root, len(held), n)
    return _subset(train, keep), _subset(train, held), f"train[::{holdout_every}]"


def orbit_cameras(like: Camera, n: int, elevation_deg: float = 30.0, up_axis: int = 2) -> Camera:
    """``n`` cameras on a circle around the origin at the mean distance of ``like``'s cameras, same intrinsics."""
    centres = like.camera_center()
    radius = float(centres.norm(dim=-1).mean())
    el = math.radians(elevation_deg)
    az = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    ring = torch.stack([torch.cos(az) * math.cos(el), torch.sin(az) * math.cos(el), torch.full_like(az, math.sin(el))], -1)
    if up_axis == 1:
        ring = ring[:, [0, 2, 1]]
    up = [0.0, 0.0, 0.0]
    up[up_axis] = 1.0
    ref = Camera.look_at(ring * radius, torch.zeros(3), width=like.width, height=like.height, up=up)
    return Camera(ref.world_to_cam, like.K[:1].expand(n, 3, 3).to(ref.dtype), like.width, like.height, like.near, like.far)
