"""What the viewer shows: meshes and cameras read from a mesh file or an output folder.

A folder is scanned (not recursively) for mesh files (``.obj``, ``.ply``,
``.glb``, ``.gltf``) and for cameras (``cameras.json`` written by
:func:`save_cameras`, or a NeRF/nerfstudio ``transforms.json``). Hidden files
(the temporaries of atomic writes) are skipped. A running fit that rewrites its
mesh file changes the folder's :func:`state_version`, and the page reloads.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.scene.camera import Camera
from lumigrad.scene.io import read_mesh, read_transforms_json

__all__ = ["save_cameras", "load_cameras", "scene_payload", "state_version", "MESH_SUFFIXES"]

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf")
_CAMERA_FILES = ("cameras.json", "transforms.json")


def _watched_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = [p for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")
             and (p.suffix.lower() in MESH_SUFFIXES or p.name in _CAMERA_FILES)]
    return files


def state_version(root: str | os.PathLike) -> str:
    """A short hash of the watched files' names, sizes and modification times."""
    root = Path(root)
    h = hashlib.sha1()
    if root.exists():
        for p in _watched_files(root):
            try:
                st = p.stat()
            except FileNotFoundError:  # replaced between listing and stat
                continue
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def save_cameras(path: str | os.PathLike, camera: Camera) -> None:
    """Write ``camera`` (all B views) as JSON the viewer draws as frusta; written atomically.

    The file holds ``world_to_cam [B, 4, 4]`` (OpenCV), ``K [B, 3, 3]``, ``width`` and ``height``.
    """
    if not isinstance(camera, Camera):
        raise TypeError(f"save_cameras(): camera must be a Camera, got {type(camera).__name__}")
    data = {
        "world_to_cam": camera.world_to_cam.detach().cpu().double().tolist(),
        "K": camera.K.detach().cpu().double().tolist(),
        "width": camera.width,
        "height": camera.height,
    }
    write_text_atomic(path, json.dumps(data))


def load_cameras(path: str | os.PathLike) -> Camera:
    """Read a camera file: ``cameras.json`` from :func:`save_cameras`, or a ``transforms.json``."""
    p = Path(path)
    if p.name == "transforms.json":
        return read_transforms_json(p).camera
    try:
        data = json.loads(p.read_text())
        return Camera(torch.tensor(data["world_to_cam"], dtype=torch.float64), torch.tensor(data["K"], dtype=torch.float64),
                      int(data["width"]), int(data["height"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"load_cameras(): {p} is not a cameras.json written by save_cameras ({exc})") from None


def _b64(array) -> str:
    return base64.b64encode(array.tobytes()).decode("ascii")


def _camera_entries(cam: Camera) -> list[dict]:
    c2w = cam.cam_to_world().detach().cpu().double()
    K = cam.K.detach().cpu().double()
    return [{"cam_to_world": c2w[b].tolist(), "fx": float(K[b, 0, 0]), "fy": float(K[b, 1, 1]),
             "cx": float(K[b, 0, 2]), "cy": float(K[b, 1, 2]), "width": cam.width, "height": cam.height}
            for b in range(cam.batch_size)]


def scene_payload(root: str | os.PathLike) -> dict:
    """The JSON document the page draws: ``{"version", "meshes", "cameras", "errors"}``.

    Each mesh is ``{"name", "num_verts", "num_faces", "verts", "faces"}`` with
    ``verts`` the base64 of little-endian float32 ``[V, 3]`` and ``faces`` of
    uint32 ``[F, 3]`` (compact and fast for large meshes); each
    camera ``{"cam_to_world": 4x4 OpenCV, "fx", "fy", "cx", "cy", "width", "height"}``.
    A file that cannot be read (e.g. mid-write by another program) is listed in
    ``errors`` and skipped; the page keeps drawing the rest.
    """
    root = Path(root)
    payload: dict = {"version": state_version(root), "meshes": [], "cameras": [], "errors": []}
    for p in _watched_files(root) if root.exists() else []:
        try:
            if p.suffix.lower() in MESH_SUFFIXES:
                mesh = read_mesh(p, dtype=torch.float32)
                payload["meshes"].append({
                    "name": p.name,
                    "num_verts": mesh.num_verts,
                    "num_faces": mesh.num_faces,
                    "verts": _b64(mesh.verts.detach().cpu().numpy().astype("<f4")),
                    "faces": _b64(mesh.faces.cpu().numpy().astype("<u4")),
                })
            else:
                payload["cameras"].extend(_camera_entries(load_cameras(p)))
        except (ValueError, OSError, KeyError) as exc:
            log.warning("viewer: skipping %s: %s", p, exc)
            payload["errors"].append(f"{p.name}: {exc}")
    return payload
