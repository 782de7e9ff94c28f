"""Multi-view image datasets: images, optional masks and cameras, from the common on-disk layouts.

Two layouts are read (the layout is detected from the folder's contents):

* **NeRF / nerfstudio**: ``transforms.json`` (see :func:`read_transforms_json`)
  with one image per frame; a frame's ``mask_path`` (nerfstudio) gives its mask,
  otherwise an RGBA image's alpha channel is the mask.
* **NeuS / IDR**: ``cameras_sphere.npz`` (``world_mat_i`` = 3x4 projection
  ``P = K [R | t]`` in pixels with integer pixel centres, ``scale_mat_i`` the
  unit-sphere normalisation; NeuS uses ``P @ scale_mat``), ``image/*.png`` and
  optional ``mask/*.png`` (sorted by name, one per camera). When there is no
  ``cameras_sphere.npz`` but one ``cameras_sphere_<W>x<H>.npz`` matching the
  image size, that one is used.

``write_dataset`` writes the nerfstudio layout (with masks and an optional
``ground_truth.json``), which is what ``lumigrad synth`` produces.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lumigrad._runtime.files import write_text_atomic
from lumigrad.scene.camera import Camera
from lumigrad.scene.io import read_image, write_image
from lumigrad.scene.transforms_json import read_transforms_json

__all__ = ["ImageDataset", "load_dataset", "read_neus_dataset", "read_nerf_dataset", "write_dataset"]

log = logging.getLogger(__name__)

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".exr", ".bmp", ".tif", ".tiff")


@dataclass
class ImageDataset:
    """Images with cameras.

    Attributes:
        images: ``[N, H, W, 3]`` linear values in [0, 1].
        masks: ``[N, H, W, 1]`` object coverage in [0, 1], or ``None``.
        camera: :class:`Camera` with ``B = N``.
        names: one label per view (the image file names).
        root: the dataset folder.
        ground_truth: the parsed ``ground_truth.json`` (synthetic data), or ``None``.
        layout: ``"nerf"`` or ``"neus"``.
    """

    images: Tensor
    masks: Tensor | None
    camera: Camera
    names: list[str]
    root: Path
    ground_truth: dict | None = None
    layout: str = "nerf"
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx) -> "ImageDataset":
        """Views ``idx`` (a list of ints or a slice)."""
        idx = list(range(len(self)))[idx] if isinstance(idx, slice) else list(idx)
        t = torch.tensor(idx, dtype=torch.long)
        return ImageDataset(
            self.images[t], None if self.masks is None else self.masks[t], self.camera[t],
            [self.names[i] for i in idx], self.root, self.ground_truth, self.layout, dict(self.extra),
        )


def _dataset_dir(fn: str, path) -> Path:
    p = Path(path)
    if p.is_file() and p.name.endswith(".json"):
        return p
    if not p.exists():
        raise FileNotFoundError(f"{fn}(): no such dataset folder: {p}")
    if not p.is_dir():
        raise ValueError(f"{fn}(): {p} is not a dataset folder or a transforms.json file")
    return p


def load_dataset(path, *, dtype: torch.dtype = torch.float32, max_views: int | None = None) -> ImageDataset:
    """Read a dataset folder (or a ``transforms.json``), detecting the layout.

    Args:
        path: the folder (``transforms.json`` or ``cameras_sphere*.npz`` inside) or
            the JSON file itself.
        dtype: float dtype of images and cameras.
        max_views: keep only the first ``max_views`` views (evenly spaced when fewer).

    Raises:
        FileNotFoundError: the folder or a referenced image is missing.
        ValueError: unreadable files, mismatched counts or sizes (the message
            names the file and the problem).
    """
    fn = "load_dataset"
    p = _dataset_dir(fn, path)
    if p.is_file():
        ds = read_nerf_dataset(p, dtype=dtype)
    elif (p / "transforms.json").is_file():
        ds = read_nerf_dataset(p / "transforms.json", dtype=dtype)
    elif (p / "cameras_sphere.npz").is_file() or list(p.glob("cameras_sphere*.npz")):
        ds = read_neus_dataset(p, dtype=dtype)
    else:
        raise ValueError(f"{fn}(): {p} has neither transforms.json (NeRF/nerfstudio) nor cameras_sphere.npz (NeuS/IDR)")
    if max_views is not None and max_views < len(ds):
        idx = np.unique(np.linspace(0, len(ds) - 1, max_views).round().astype(int)).tolist()
        ds = ds.subset(idx)
    return ds


def _read_rgb_mask(fn: str, path: Path, dtype) -> tuple[Tensor, Tensor | None]:
    img = read_image(path, dtype=dtype)
    c = img.shape[-1]
    if c == 4:
        alpha = img[..., 3:4]
        return img[..., :3] * 1.0, alpha  # stored straight (not premultiplied) as PNG does
    if c == 3:
        return img, None
    if c in (1, 2):
        return img[..., :1].expand(-1, -1, 3).clone(), (img[..., 1:2] if c == 2 else None)
    raise ValueError(f"{fn}(): {path} has {c} channels; expected 1 to 4")


def _read_mask(fn: str, path: Path, hw: tuple[int, int], dtype) -> Tensor:
    m = read_image(path, dtype=dtype)
    if tuple(m.shape[:2]) != hw:
        raise ValueError(f"{fn}(): mask {path} is {m.shape[1]}x{m.shape[0]} (WxH) but its image is {hw[1]}x{hw[0]}")
    return m[..., :1] if m.shape[-1] in (1, 2) else m[..., :3].mean(-1, keepdim=True) if m.shape[-1] == 3 else m[..., 3:4]


def read_nerf_dataset(path, *, dtype: torch.dtype = torch.float32) -> ImageDataset:
    """Images, masks and cameras of a NeRF-synthetic / nerfstudio ``transforms.json``."""
    fn = "read_nerf_dataset"
    cams = read_transforms_json(path, dtype=dtype)
    p = Path(path)
    meta = json.loads(p.read_text(encoding="utf-8"))
    frames = meta["frames"]
    images, masks = [], []
    hw = (cams.camera.height, cams.camera.width)
    for i, (img_path, fr) in enumerate(zip(cams.image_paths, frames)):
        if not img_path.is_file():
            raise FileNotFoundError(f"{fn}(): {p} frame {i} names image {img_path}, which does not exist")
        rgb, alpha = _read_rgb_mask(fn, img_path, dtype)
        if tuple(rgb.shape[:2]) != hw:
            raise ValueError(f"{fn}(): image {img_path} is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but {p} says "
                             f"{hw[1]}x{hw[0]}")
        if "mask_path" in fr:
            mp = (p.parent / fr["mask_path"])
            if not mp.is_file():
                raise FileNotFoundError(f"{fn}(): {p} frame {i} names mask {mp}, which does not exist")
            alpha = _read_mask(fn, mp, hw, dtype)
        images.append(rgb)
        masks.append(alpha)
    have = [m is not None for m in masks]
    if any(have) and not all(have):
        missing = [cams.image_paths[i].name for i, h in enumerate(have) if not h][:3]
        raise ValueError(f"{fn}(): {p}: some frames have masks and some do not (e.g. {missing}); give all or none")
    gt = _ground_truth(p.parent)
    return ImageDataset(torch.stack(images), torch.stack(masks) if all(have) else None, cams.camera,
                        [ip.name for ip in cams.image_paths], p.parent, gt, "nerf")


def _ground_truth(root: Path) -> dict | None:
    g = root / "ground_truth.json"
    if not g.is_file():
        return None
    try:
        return json.loads(g.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load_dataset(): {g} is not valid JSON: {e}") from None


def _decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P = K [R | t]`` (3x4) -> ``K`` (positive diagonal, K[2,2] = 1), ``R``, ``t``."""
    M = P[:, :3]
    # RQ decomposition via QR of the row-reversed transpose.
    flip = np.eye(3)[::-1]
    q, r = np.linalg.qr((flip @ M).T)
    K = flip @ r.T @ flip
    R = flip @ q.T
    sign = np.diag(np.sign(np.diag(K)))
    K, R = K @ sign, sign @ R
    scale = K[2, 2]
    if np.linalg.det(R) < 0:
        R, scale = -R, -scale
    K = K / K[2, 2]
    t = np.linalg.solve(K, P[:, 3]) / scale
    return K, R, t


def read_neus_dataset(path, *, dtype: torch.dtype = torch.float32) -> ImageDataset:
    """Images, masks and cameras of a NeuS/IDR folder (``cameras_sphere.npz``, ``image/``, ``mask/``).

    The cameras include ``scale_mat`` (so the object lies in the unit sphere at
    the origin), and ``cx, cy`` are shifted by +0.5 to lumigrad's pixel-centre
    convention.
    """
    fn = "read_neus_dataset"
    root = Path(path)
    img_dir = root / "image"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{fn}(): {root} has no image/ folder")
    img_files = sorted(f for f in img_dir.iterdir() if f.suffix.lower() in _IMAGE_EXT)
    if not img_files:
        raise ValueError(f"{fn}(): {img_dir} contains no images")
    first, _ = _read_rgb_mask(fn, img_files[0], dtype)
    h, w = first.shape[:2]
    npz = root / "cameras_sphere.npz"
    if not npz.is_file():
        cands = sorted(root.glob("cameras_sphere*.npz"))
        sized = [c for c in cands if c.stem.endswith(f"_{w}x{h}")]
        if len(sized) != 1:
            raise ValueError(f"{fn}(): {root} has no cameras_sphere.npz and no single cameras_sphere_{w}x{h}.npz "
                             f"matching the {w}x{h} images (found {[c.name for c in cands]})")
        npz = sized[0]
    try:
        data = np.load(npz)
        n_cams = len([k for k in data.files if k.startswith("world_mat_") and not k.startswith("world_mat_inv")])
    except Exception as e:  # numpy raises several types for corrupt files
        raise ValueError(f"{fn}(): cannot read {npz}: {type(e).__name__}: {e}") from None
    if n_cams != len(img_files):
        raise ValueError(f"{fn}(): {npz} has {n_cams} cameras but {img_dir} has {len(img_files)} images")
    mask_dir = root / "mask"
    mask_files = sorted(f for f in mask_dir.iterdir() if f.suffix.lower() in _IMAGE_EXT) if mask_dir.is_dir() else []
    if mask_files and len(mask_files) != len(img_files):
        raise ValueError(f"{fn}(): {mask_dir} has {len(mask_files)} masks but {img_dir} has {len(img_files)} images")
    w2c, ks, images, masks = [], [], [], []
    for i, f in enumerate(img_files):
        try:
            P = data[f"world_mat_{i}"].astype(np.float64)
            S = data[f"scale_mat_{i}"].astype(np.float64) if f"scale_mat_{i}" in data.files else np.eye(4)
        except KeyError:
            raise ValueError(f"{fn}(): {npz} lacks world_mat_{i}") from None
        P = (P @ S)[:3, :4]
        if not np.isfinite(P).all():
            raise ValueError(f"{fn}(): {npz} world_mat_{i} @ scale_mat_{i} is not finite")
        K, R, t = _decompose_projection(P)
        K[0, 2] += 0.5
        K[1, 2] += 0.5
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = R, t
        w2c.append(m)
        ks.append(K)
        rgb, alpha = _read_rgb_mask(fn, f, dtype)
        if tuple(rgb.shape[:2]) != (h, w):
            raise ValueError(f"{fn}(): image {f} is {rgb.shape[1]}x{rgb.shape[0]}, the first image is {w}x{h}")
        images.append(rgb)
        if mask_files:
            masks.append(_read_mask(fn, mask_files[i], (h, w), dtype))
    ks_t = torch.tensor(np.stack(ks))
    ks_t[:, 0, 1] = 0.0  # numerical skew from the decomposition
    try:
        cam = Camera(torch.tensor(np.stack(w2c)), ks_t, w, h, near=0.05, far=100.0)
    except ValueError as e:
        raise ValueError(f"{fn}(): {npz} gives invalid cameras: {e}") from None
    return ImageDataset(torch.stack(images), torch.stack(masks) if masks else None, cam.to(dtype=dtype),
                        [f.name for f in img_files], root, _ground_truth(root), "neus")


def write_dataset(
    out_dir,
    images: Tensor,  # [N, H, W, 3]
    camera: Camera,
    masks: Tensor | None = None,  # [N, H, W, 1]
    ground_truth: dict | None = None,
) -> Path:
    """Write a nerfstudio-layout dataset: ``images/NNN.png``, ``masks/NNN.png``, ``transforms.json``.

    Every file is written atomically; returns the ``transforms.json`` path.
    """
    fn = "write_dataset"
    out = Path(out_dir)
    n, h, w = images.shape[:3]
    if camera.batch_size != n or (camera.height, camera.width) != (h, w):
        raise ValueError(f"{fn}(): {n} images of {w}x{h} need a camera with B={n} and that size, got "
                         f"B={camera.batch_size}, {camera.width}x{camera.height}")
    if masks is not None and tuple(masks.shape) != (n, h, w, 1):
        raise ValueError(f"{fn}(): masks must be [N={n}, H={h}, W={w}, 1], got {list(masks.shape)}")
    c2w = camera.cam_to_world_opengl().detach().double().cpu()
    k = camera.K.detach().double().cpu()
    frames = []
    for i in range(n):
        name = f"{i:03d}.png"
        write_image(out / "images" / name, images[i].detach().clamp(0, 1).cpu())
        fr = {"file_path": f"images/{name}", "transform_matrix": c2w[i].tolist(),
              "fl_x": float(k[i, 0, 0]), "fl_y": float(k[i, 1, 1]), "cx": float(k[i, 0, 2]), "cy": float(k[i, 1, 2])}
        if masks is not None:
            write_image(out / "masks" / name, masks[i].detach().clamp(0, 1).expand(-1, -1, 3).cpu())
            fr["mask_path"] = f"masks/{name}"
        frames.append(fr)
    meta = {"camera_model": "PINHOLE", "w": w, "h": h, "frames": frames}
    if ground_truth is not None:
        write_text_atomic(out / "ground_truth.json", json.dumps(ground_truth, indent=2))
    write_text_atomic(out / "transforms.json", json.dumps(meta, indent=1))
    return out / "transforms.json"
