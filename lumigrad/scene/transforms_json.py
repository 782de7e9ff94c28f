"""NeRF-synthetic and nerfstudio ``transforms.json`` camera sets."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lumigrad._runtime.files import existing_file as _existing
from lumigrad.scene.camera import Camera

__all__ = ["CameraSet", "read_transforms_json"]

log = logging.getLogger(__name__)


class CameraSet(NamedTuple):
    """Cameras of a NeRF-synthetic or nerfstudio ``transforms.json``.

    Attributes:
        camera: batched :class:`Camera` (B = number of frames, OpenCV convention).
        image_paths: one path per frame (resolved; may not exist).
        cam_to_world_gl: ``[B, 4, 4]`` the file's OpenGL camera-to-world matrices.
    """

    camera: Camera
    image_paths: list[Path]
    cam_to_world_gl: Tensor


_PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "RADIAL", "SIMPLE_RADIAL")
_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


def _frame_image_path(root: Path, frame: dict) -> Path:
    p = root / frame["file_path"]
    if not p.suffix and not p.exists():  # NeRF-synthetic omits ".png"
        p = p.with_name(p.name + ".png")
    return p


def _intrinsics(p: Path, meta: dict, frame: dict, idx: int, state: dict) -> tuple[float, ...]:
    def get(key):
        return frame.get(key, meta.get(key))

    model = get("camera_model")
    if model is not None and str(model).upper() not in _PINHOLE_MODELS:
        raise ValueError(f"read_transforms_json(): {p} camera_model {model!r} is not supported (pinhole only)")
    if any(float(get(k) or 0.0) != 0.0 for k in _DISTORTION) and not state.get("warned"):
        state["warned"] = True
        log.warning("read_transforms_json(): %s has lens distortion; it is ignored (undistort the images first)", p)
    w, h = get("w"), get("h")
    if w is None or h is None:
        if "size" not in state:
            img = _frame_image_path(p.parent, frame)
            if not img.is_file():
                raise FileNotFoundError(f"read_transforms_json(): {p} has no 'w'/'h' and its image {img} is missing")
            import imageio.v3 as iio

            shape = iio.improps(img).shape
            state["size"] = (int(shape[1]), int(shape[0]))
        w, h = state["size"]
    w, h = int(w), int(h)
    fx = get("fl_x")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
    fy = get("fl_y")
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * h / math.tan(0.5 * float(get("camera_angle_y")))
    if fx is None and fy is None:
        raise ValueError(f"read_transforms_json(): {p} frame {idx} has no focal length "
                         "(need 'fl_x'/'fl_y' or 'camera_angle_x')")
    fx = float(fx if fx is not None else fy)
    fy = float(fy if fy is not None else fx)
    cx, cy = get("cx"), get("cy")
    return w, h, fx, fy, float(cx if cx is not None else w / 2), float(cy if cy is not None else h / 2)


def read_transforms_json(
    path, *, near: float = 0.01, far: float = 100.0, dtype: torch.dtype = torch.float32, device=None
) -> CameraSet:
    """Cameras from a NeRF-synthetic or nerfstudio ``transforms.json``.

    NeRF-synthetic: ``camera_angle_x`` (horizontal fov, radians), frames with
    ``file_path`` (``.png`` appended when missing) and ``transform_matrix``
    (OpenGL camera-to-world). nerfstudio: ``fl_x, fl_y, cx, cy, w, h`` and
    ``camera_model`` at the top level or per frame (per-frame values win);
    ``cx, cy`` use the +0.5 pixel-centre convention, like ours. The image size
    comes from the first image when ``w``/``h`` are absent. Distortion
    coefficients are ignored with a warning. All frames must share one size.

    Args:
        path: the JSON file.
        near: near plane for the returned cameras.
        far: far plane.
        dtype: float dtype of the matrices.
        device: their device.

    Returns:
        :class:`CameraSet`.
    """
    fn = "read_transforms_json"
    p = _existing(fn, path)
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{fn}(): {p} is not valid JSON: {e}") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{fn}(): {p} has no 'frames' list")
    c2w, ks, paths, state, sizes = [], [], [], {}, set()
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or "transform_matrix" not in fr or "file_path" not in fr:
            raise ValueError(f"{fn}(): {p} frame {i} needs 'file_path' and 'transform_matrix'")
        try:
            m = np.asarray(fr["transform_matrix"], dtype=np.float64)
            w, h, fx, fy, cx, cy = _intrinsics(p, meta, fr, i, state)
        except (TypeError, ValueError) as e:
            if str(p) in str(e):
                raise
            raise ValueError(f"{fn}(): {p} frame {i} has a non-numeric or ragged entry ({e})") from None
        if m.shape == (3, 4):
            m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"{fn}(): {p} frame {i} transform_matrix must be finite 4x4, got shape {m.shape}")
        if w <= 0 or h <= 0 or not (fx > 0 and fy > 0):
            raise ValueError(f"{fn}(): {p} frame {i} needs positive w, h and focal lengths, got w={w}, h={h}, "
                             f"fx={fx}, fy={fy}")
        sizes.add((w, h))
        c2w.append(m)
        ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        paths.append(_frame_image_path(p.parent, fr))
    if len(sizes) > 1:
        raise ValueError(f"{fn}(): {p} mixes image sizes {sorted(sizes)}; one Camera needs one size")
    w, h = sizes.pop()
    c2w_64 = torch.from_numpy(np.stack(c2w))
    try:  # invert in float64, then cast
        cam = Camera.from_opengl(c2w_64, w, h, K=torch.tensor(ks, dtype=torch.float64), near=near, far=far)
    except ValueError as e:
        raise ValueError(f"{fn}(): {p} gives invalid cameras: {e}") from None
    return CameraSet(cam.to(device=device, dtype=dtype), paths, c2w_64.to(device=device, dtype=dtype))
