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


def _frame_image_path(root: Path, frame: dict, where: str = "read_transforms_json(): frame") -> Path:
    fp = frame["file_path"]
    if not isinstance(fp, str) or not fp.strip():
        raise ValueError(f"{where} 'file_path' must be a non-empty string, got {fp!r}")
    p = root / fp
    if not p.suffix and not p.exists():  # NeRF-synthetic omits ".png"
        p = p.with_name(p.name + ".png")
    return p


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _size(p: Path, idx: int, key: str, value) -> int:
    v = _number(value) if not isinstance(value, int) or isinstance(value, bool) else value
    if not (isinstance(v, int) or (math.isfinite(v) and v == int(v))) or v <= 0 or v > 2**31 - 1:
        raise ValueError(f"read_transforms_json(): {p} frame {idx} '{key}' must be a positive integer "
                         f"image size in pixels, got {value!r}")
    return int(v)


def _fov(p: Path, idx: int, key: str, value) -> float:
    """A field of view in radians, strictly inside (0, pi)."""
    a = _number(value)
    if not 0.0 < a < math.pi:
        hint = " (it looks like degrees)" if math.isfinite(a) and a > math.pi else ""
        raise ValueError(f"read_transforms_json(): {p} frame {idx} '{key}' must be a field of view in "
                         f"(0, pi) radians{hint}, got {value!r}")
    return a


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
            img = _frame_image_path(p.parent, frame, f"read_transforms_json(): {p} frame {idx}")
            if not img.is_file():
                raise FileNotFoundError(f"read_transforms_json(): {p} has no 'w'/'h' and its image {img} is missing")
            import imageio.v3 as iio

            shape = iio.improps(img).shape
            state["size"] = (int(shape[1]), int(shape[0]))
        w, h = state["size"]
    w, h = _size(p, idx, "w", w), _size(p, idx, "h", h)
    fx = get("fl_x")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * _fov(p, idx, "camera_angle_x", get("camera_angle_x")))
    fy = get("fl_y")
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * h / math.tan(0.5 * _fov(p, idx, "camera_angle_y", get("camera_angle_y")))
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
    except RecursionError:
        raise ValueError(f"{fn}(): {p} is nested too deeply to be a transforms.json") from None
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
            path_i = _frame_image_path(p.parent, fr, f"{fn}(): {p} frame {i}")
        except (TypeError, ValueError, OverflowError) as e:
            if str(p) in str(e):
                raise
            raise ValueError(f"{fn}(): {p} frame {i} has a non-numeric or ragged entry ({e})") from None
        if m.shape == (3, 4):
            m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"{fn}(): {p} frame {i} transform_matrix must be finite 4x4, got shape {m.shape}")
        if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError(f"{fn}(): {p} frame {i} transform_matrix must have last row [0, 0, 0, 1], got {m[3].tolist()}")
        rot = m[:3, :3]
        if not abs(np.linalg.det(rot)) > 1e-9 * max(np.abs(rot).max(), 1e-300) ** 3:
            raise ValueError(f"{fn}(): {p} frame {i} transform_matrix is singular (its 3x3 part has determinant "
                             f"{np.linalg.det(rot):.3g}); a camera pose must be invertible")
        if not all(math.isfinite(x) for x in (fx, fy, cx, cy)) or not (fx > 0 and fy > 0):
            raise ValueError(f"{fn}(): {p} frame {i} needs positive w, h and focal lengths, got w={w}, h={h}, "
                             f"fx={fx}, fy={fy}")
        sizes.add((w, h))
        c2w.append(m)
        ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        paths.append(path_i)
    if len(sizes) > 1:
        raise ValueError(f"{fn}(): {p} mixes image sizes {sorted(sizes)}; one Camera needs one size")
    w, h = sizes.pop()
    c2w_64 = torch.from_numpy(np.stack(c2w))
    try:  # invert in float64, then cast
        cam = Camera.from_opengl(c2w_64, w, h, K=torch.tensor(ks, dtype=torch.float64), near=near, far=far)
    except ValueError as e:
        raise ValueError(f"{fn}(): {p} gives invalid cameras: {e}") from None
    return CameraSet(cam.to(device=device, dtype=dtype), paths, c2w_64.to(device=device, dtype=dtype))
