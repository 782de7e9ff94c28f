"""Batched pinhole / orthographic cameras (OpenCV frame, pixel intrinsics).

A :class:`Camera` turns world points into the clip-space ``pos [B, V, 4]`` that
the ops take, and pixels into world rays. Conventions: docs/conventions.md.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lumigrad._runtime.checks import check_finite
from lumigrad.geometry.conventions import opencv_to_opengl_cam_to_world, opengl_to_opencv_cam_to_world
from lumigrad.geometry.projection import intrinsics_from_fov, orthographic_clip_from_K, perspective_clip_from_K
from lumigrad.geometry.transforms import look_at_world_to_cam, transform_points

__all__ = ["Camera", "Rays", "PyTorch3DCameraParams"]

_PROJECTIONS = ("perspective", "orthographic")


def _desc(t: Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


def _batched(name: str, t, inner: tuple[int, ...]) -> Tensor:
    shape = "[B, " + ", ".join(map(str, inner)) + "]"
    if not isinstance(t, Tensor):
        raise TypeError(f"Camera(): {name} must be a torch.Tensor {shape}, got {type(t).__name__}")
    ok = t.dtype in (torch.float32, torch.float64) and t.ndim in (len(inner), len(inner) + 1)
    if not ok or tuple(t.shape[-len(inner):]) != inner or (t.ndim == len(inner) + 1 and t.shape[0] == 0):
        raise ValueError(f"Camera(): {name} must be float32/float64 {shape}, got {_desc(t)}")
    return t if t.ndim == len(inner) + 1 else t.unsqueeze(0)


class Rays(NamedTuple):
    """World-space rays through pixel centres.

    Attributes:
        origins: ``[B, H, W, 3]``.
        dirs: ``[B, H, W, 3]``.
    """

    origins: Tensor
    dirs: Tensor


class PyTorch3DCameraParams(NamedTuple):
    """PyTorch3D ``PerspectiveCameras`` / ``OrthographicCameras`` arguments (``in_ndc=True``).

    Attributes:
        R: ``[B, 3, 3]`` row-vector world-to-view rotation.
        T: ``[B, 3]`` translation (``X_view = X_world @ R + T``).
        focal_length: ``[B, 2]`` NDC focal lengths.
        principal_point: ``[B, 2]`` NDC principal point.
        image_size: ``(H, W)``.
        orthographic: True for ``OrthographicCameras``.
    """

    R: Tensor
    T: Tensor
    focal_length: Tensor
    principal_point: Tensor
    image_size: tuple[int, int]
    orthographic: bool


@dataclass(frozen=True, eq=False)
class Camera:
    """A batch of B cameras sharing one image size.

    Attributes:
        world_to_cam: ``[B, 4, 4]`` rigid (or similarity) world -> OpenCV camera
            (x right, y down, z forward). ``[4, 4]`` is accepted as B = 1.
        K: ``[B, 3, 3]`` intrinsics in pixels, ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``,
            ``fx, fy > 0``; pixel centres are at +0.5. For ``"orthographic"``,
            ``fx, fy`` are pixels per camera-frame unit. ``[3, 3]`` is accepted; a
            batch of 1 broadcasts against the other field.
        width: image width W in pixels.
        height: image height H in pixels.
        near: near plane depth (camera z), ``0 < near < far``.
        far: far plane depth.
        projection: ``"perspective"`` or ``"orthographic"``.

    ``world_to_cam`` and ``K`` are ordinary tensors: make them require grad (or
    build them from a pose parameterisation) and every method is differentiable.

    Example:
        >>> cam = Camera.look_at(torch.tensor([0., 0., 3.]), torch.zeros(3), width=64, height=48)
        >>> pos = cam.project(torch.rand(100, 3))  # [1, 100, 4], what rasterize() takes
    """

    world_to_cam: Tensor
    K: Tensor
    width: int
    height: int
    near: float = 0.01
    far: float = 100.0
    projection: Literal["perspective", "orthographic"] = "perspective"

    def __post_init__(self) -> None:
        w2c = _batched("world_to_cam", self.world_to_cam, (4, 4))
        k = _batched("K", self.K, (3, 3))
        if w2c.dtype != k.dtype or w2c.device != k.device:
            raise ValueError(f"Camera(): world_to_cam and K must share dtype and device, got {_desc(w2c)} on "
                             f"{w2c.device} and {_desc(k)} on {k.device}")
        if w2c.shape[0] != k.shape[0]:
            if 1 not in (w2c.shape[0], k.shape[0]):
                raise ValueError(f"Camera(): batch sizes must match, got world_to_cam {_desc(w2c)} and K {_desc(k)}")
            b = max(w2c.shape[0], k.shape[0])
            w2c, k = w2c.expand(b, 4, 4), k.expand(b, 3, 3)
        check_finite("Camera", "world_to_cam", w2c)
        check_finite("Camera", "K", k)
        last = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=w2c.dtype, device=w2c.device)
        if not torch.allclose(w2c[:, 3].detach(), last.expand(w2c.shape[0], 4), atol=1e-6):
            raise ValueError("Camera(): world_to_cam must have last row [0, 0, 0, 1] (an affine transform)")
        rot = w2c[:, :3, :3].detach().double()
        scale = rot.abs().amax(dim=(1, 2)).clamp_min(1e-300)
        if not bool((torch.linalg.det(rot).abs() > 1e-9 * scale**3).all()):
            bad = int((torch.linalg.det(rot).abs() <= 1e-9 * scale**3).nonzero()[0, 0])
            raise ValueError(f"Camera(): world_to_cam[{bad}] is singular (its 3x3 part has determinant "
                             f"{float(torch.linalg.det(rot[bad])):.3g}); a camera pose must be invertible")
        kd = k.detach()
        if bool((kd[:, 1, 0] != 0).any() | (kd[:, 2, 0] != 0).any() | (kd[:, 2, 1] != 0).any() | (kd[:, 2, 2] != 1).any()):
            raise ValueError("Camera(): K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
        if not bool(((kd[:, 0, 0] > 0) & (kd[:, 1, 1] > 0)).all()):
            raise ValueError("Camera(): K's fx and fy must be > 0")
        for name in ("width", "height"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"Camera(): {name} must be a positive int, got {val!r}")
        for name in ("near", "far"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ValueError(f"Camera(): {name} must be a finite float, got {val!r}")
        if not 0 < self.near < self.far:
            raise ValueError(f"Camera(): need 0 < near < far, got near={self.near!r}, far={self.far!r}")
        if self.projection not in _PROJECTIONS:
            raise ValueError(f"Camera(): projection must be one of {_PROJECTIONS}, got {self.projection!r}")
        object.__setattr__(self, "world_to_cam", w2c)
        object.__setattr__(self, "K", k)
        object.__setattr__(self, "near", float(self.near))
        object.__setattr__(self, "far", float(self.far))

    # -- constructors ----------------------------------------------------------

    @classmethod
    def from_fov(
        cls,
        fov_y_deg,
        width: int,
        height: int,
        world_to_cam: Tensor,
        near: float = 0.01,
        far: float = 100.0,
    ) -> "Camera":
        """Perspective camera with square pixels and a centred principal point.

        Args:
            fov_y_deg: vertical field of view in degrees (float or ``[B]`` tensor).
            width: image width in pixels.
            height: image height in pixels.
            world_to_cam: ``[B, 4, 4]`` or ``[4, 4]`` OpenCV world-to-camera.
            near: near plane.
            far: far plane.
        """
        if not isinstance(world_to_cam, Tensor):
            raise TypeError(f"Camera.from_fov(): world_to_cam must be a torch.Tensor [B, 4, 4], got "
                            f"{type(world_to_cam).__name__}")
        k = intrinsics_from_fov(fov_y_deg, width, height, dtype=world_to_cam.dtype, device=world_to_cam.device)
        return cls(world_to_cam, k, width, height, near, far)

    @classmethod
    def look_at(
        cls,
        eye,
        target,
        *,
        width: int,
        height: int,
        up=(0.0, 1.0, 0.0),
        fov_y_deg: float = 45.0,
        near: float = 0.01,
        far: float = 100.0,
        dtype: torch.dtype | None = None,
        device=None,
    ) -> "Camera":
        """Perspective camera(s) at ``eye`` looking at ``target``, with world ``up`` shown upwards.

        lumigrad's default world is +Y up (right-handed), so ``up=(0, 1, 0)``; the
        camera's y axis (image down) is the part of ``-up`` orthogonal to the view.

        Args:
            eye: ``[B, 3]`` or ``[3]`` tensor or sequence: camera centres.
            target: ``[B, 3]`` or ``[3]``: points that land at the principal point.
            width: image width in pixels.
            height: image height in pixels.
            up: ``[B, 3]`` or ``[3]`` world up; must not be parallel to the view direction.
            fov_y_deg: vertical field of view in degrees (float or ``[B]`` tensor).
            near: near plane.
            far: far plane.
            dtype: dtype for non-tensor inputs (default: the tensors' dtype, else float32).
            device: device for non-tensor inputs.
        """
        ref = next((t for t in (eye, target, up) if isinstance(t, Tensor)), None)
        dtype = dtype or (ref.dtype if ref is not None else torch.float32)
        device = device if device is not None else (ref.device if ref is not None else None)
        e, t, u = (x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=dtype, device=device) for x in (eye, target, up))
        w2c = look_at_world_to_cam(e, t, u)  # validates shapes
        e, t, u = torch.broadcast_tensors(e.detach(), t.detach(), u.detach())
        fwd, up_dir = torch.nn.functional.normalize(t - e, dim=-1), torch.nn.functional.normalize(u, dim=-1)
        if not bool((torch.linalg.cross(fwd, up_dir).norm(dim=-1) > 1e-6).all() & ((t - e).norm(dim=-1) > 0).all()):
            raise ValueError("Camera.look_at(): eye must differ from target, and up must not be parallel to "
                             "target - eye")
        return cls.from_fov(fov_y_deg, width, height, w2c, near, far)

    @classmethod
    def from_opengl(
        cls,
        cam_to_world_gl: Tensor,
        width: int,
        height: int,
        *,
        K: Tensor | None = None,
        fov_y_deg=None,
        near: float = 0.01,
        far: float = 100.0,
    ) -> "Camera":
        """From OpenGL/Blender/NeRF camera-to-world matrices (x right, y up, looking along -z).

        Args:
            cam_to_world_gl: ``[B, 4, 4]`` or ``[4, 4]``.
            width: image width in pixels.
            height: image height in pixels.
            K: ``[B, 3, 3]`` pixel intrinsics (OpenCV-style, +0.5 centres); or
            fov_y_deg: vertical field of view (exactly one of ``K``/``fov_y_deg``).
            near: near plane.
            far: far plane.
        """
        if not isinstance(cam_to_world_gl, Tensor):
            raise TypeError(f"Camera.from_opengl(): cam_to_world_gl must be a torch.Tensor [B, 4, 4], got "
                            f"{type(cam_to_world_gl).__name__}")
        if (K is None) == (fov_y_deg is None):
            raise ValueError("Camera.from_opengl(): give exactly one of K and fov_y_deg")
        c2w = _batched("cam_to_world_gl", cam_to_world_gl, (4, 4))
        check_finite("Camera.from_opengl", "cam_to_world_gl", c2w)
        w2c = torch.linalg.inv(opengl_to_opencv_cam_to_world(c2w))
        if K is None:
            return cls.from_fov(fov_y_deg, width, height, w2c, near, far)
        return cls(w2c, K, width, height, near, far)

    @classmethod
    def from_pytorch3d(
        cls,
        R: Tensor,
        T: Tensor,
        *,
        image_size: tuple[int, int],
        camera_type: Literal["fov_perspective", "perspective", "fov_orthographic", "orthographic"] = "fov_perspective",
        fov_deg=60.0,
        aspect_ratio: float = 1.0,
        focal_length=1.0,
        principal_point=(0.0, 0.0),
        in_ndc: bool = True,
        min_x: float = -1.0,
        max_x: float = 1.0,
        min_y: float = -1.0,
        max_y: float = 1.0,
        scale_xyz=(1.0, 1.0, 1.0),
        near: float = 0.01,
        far: float = 100.0,
    ) -> "Camera":
        """From PyTorch3D camera parameters (conventions in docs/conventions.md, "PyTorch3D").

        PyTorch3D's ``R [B, 3, 3]``, ``T [B, 3]`` act on row vectors,
        ``X_view = X_world @ R + T``, in a view frame with +X left, +Y up, +Z
        forward; its NDC has the shorter image side spanning [-1, 1], +X left,
        +Y up. So ``world_to_cam`` (OpenCV) is ``diag(-1, -1, 1) @ [R^T | T]``
        and, with ``s = min(H, W) / 2``:

        * ``"fov_perspective"`` (``FoVPerspectiveCameras``): ``fy = s / tan(fov / 2)``,
          ``fx = fy / aspect_ratio``, principal point at the image centre.
        * ``"perspective"`` (``PerspectiveCameras``): with ``in_ndc=True``,
          ``fx = s * focal_x``, ``cx = W/2 - s * px`` (same for y); with
          ``in_ndc=False`` ``focal_length`` and ``principal_point`` are already
          pixels (``fx``, ``cx``).
        * ``"fov_orthographic"`` (``FoVOrthographicCameras``): ``fx = 2 s
          scale_x / (max_x - min_x)``, ``cx = W/2 + s (max_x + min_x) / (max_x - min_x)``.
        * ``"orthographic"`` (``OrthographicCameras``): as ``"perspective"``
          without the division by depth.

        Args:
            R: ``[B, 3, 3]`` or ``[3, 3]`` PyTorch3D rotation (row-vector convention).
            T: ``[B, 3]`` or ``[3]`` PyTorch3D translation.
            image_size: ``(H, W)`` in pixels, PyTorch3D's order.
            camera_type: which PyTorch3D camera class the parameters belong to.
            fov_deg: field of view in degrees (FoV perspective).
            aspect_ratio: FoV perspective aspect ratio (PyTorch3D's default 1).
            focal_length: float, ``[B]`` or ``[B, 2]`` (NDC units when ``in_ndc``).
            principal_point: ``(px, py)`` or ``[B, 2]`` (NDC units when ``in_ndc``).
            in_ndc: whether ``focal_length``/``principal_point`` are in NDC.
            min_x, max_x, min_y, max_y: FoV orthographic view-volume bounds.
            scale_xyz: FoV orthographic per-axis scale (z is ignored).
            near: near plane (camera z).
            far: far plane.

        Returns:
            A :class:`Camera`; ``project_to_pixels`` gives the pixels PyTorch3D's
            ``transform_points_screen`` gives (with +0.5 pixel centres).
        """
        fn = "Camera.from_pytorch3d"
        for name, t in (("R", R), ("T", T)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{fn}(): {name} must be a torch.Tensor, got {type(t).__name__}")
        rot = _batched("R", R, (3, 3))
        trans = _batched("T", T, (3,))
        if trans.dtype != rot.dtype or trans.device != rot.device:
            raise ValueError(f"{fn}(): R and T must share dtype and device, got {_desc(rot)} and {_desc(trans)}")
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"{fn}(): image_size must be (H, W) ints, got {image_size!r}") from None
        if h <= 0 or w <= 0:
            raise ValueError(f"{fn}(): image_size must be positive (H, W), got {image_size!r}")
        types = ("fov_perspective", "perspective", "fov_orthographic", "orthographic")
        if camera_type not in types:
            raise ValueError(f"{fn}(): camera_type must be one of {types}, got {camera_type!r}")
        b = max(rot.shape[0], trans.shape[0])
        rot, trans = rot.expand(b, 3, 3), trans.expand(b, 3)
        dt, dev = rot.dtype, rot.device
        flip = torch.tensor([-1.0, -1.0, 1.0], dtype=dt, device=dev)
        top = torch.cat([flip[:, None] * rot.transpose(1, 2), (flip * trans)[..., None]], dim=-1)
        last = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dt, device=dev).expand(b, 1, 4)
        w2c = torch.cat([top, last], dim=1)
        s = min(h, w) / 2.0

        def pair(v, name):
            t = torch.as_tensor(v, dtype=dt, device=dev)
            if t.ndim == 0:
                t = t.reshape(1, 1).expand(b, 2)
            elif t.ndim == 1:
                t = t.reshape(1, 2) if name != "focal_length" else t[:, None].expand(-1, 2)
            if t.shape[-1] != 2 or t.shape[0] not in (1, b):
                raise ValueError(f"{fn}(): {name} must be a float, [B] or [B, 2], got {list(t.shape)}")
            return t.expand(b, 2)

        projection = "orthographic" if camera_type.endswith("orthographic") else "perspective"
        if camera_type == "fov_perspective":
            fov = torch.as_tensor(fov_deg, dtype=dt, device=dev).reshape(-1).expand(b)
            if not bool(((fov > 0) & (fov < 180)).all()):
                raise ValueError(f"{fn}(): fov_deg must be in (0, 180), got {fov_deg!r}")
            fy = s / torch.tan(torch.deg2rad(fov) / 2)
            fx = fy / float(aspect_ratio)
            cx, cy = torch.full_like(fx, w / 2), torch.full_like(fx, h / 2)
        elif camera_type == "fov_orthographic":
            if not (max_x > min_x and max_y > min_y):
                raise ValueError(f"{fn}(): need max_x > min_x and max_y > min_y, got x [{min_x}, {max_x}], "
                                 f"y [{min_y}, {max_y}]")
            sc = pair(torch.as_tensor(scale_xyz, dtype=dt, device=dev)[..., :2], "scale_xyz")
            fx = 2 * s * sc[:, 0] / (max_x - min_x)
            fy = 2 * s * sc[:, 1] / (max_y - min_y)
            cx = torch.full_like(fx, w / 2 + s * (max_x + min_x) / (max_x - min_x))
            cy = torch.full_like(fy, h / 2 + s * (max_y + min_y) / (max_y - min_y))
        else:
            f, pp = pair(focal_length, "focal_length"), pair(principal_point, "principal_point")
            if in_ndc:
                fx, fy = s * f[:, 0], s * f[:, 1]
                cx, cy = w / 2 - s * pp[:, 0], h / 2 - s * pp[:, 1]
            else:
                fx, fy, cx, cy = f[:, 0], f[:, 1], pp[:, 0], pp[:, 1]
        zero, one = torch.zeros_like(fx), torch.ones_like(fx)
        k = torch.stack([torch.stack([fx, zero, cx], -1), torch.stack([zero, fy, cy], -1),
                         torch.stack([zero, zero, one], -1)], dim=-2)
        return cls(w2c, k, w, h, near, far, projection)

    def to_pytorch3d(self) -> "PyTorch3DCameraParams":
        """Inverse of :meth:`from_pytorch3d` as ``PerspectiveCameras`` / ``OrthographicCameras`` NDC parameters.

        Returns:
            :class:`PyTorch3DCameraParams` ``(R [B,3,3], T [B,3], focal_length [B,2],
            principal_point [B,2], image_size (H, W), orthographic)``, in NDC
            (``in_ndc=True``). Needs a rigid ``world_to_cam`` and zero skew.
        """
        fn = "Camera.to_pytorch3d"
        if bool((self.K[:, 0, 1].detach() != 0).any()):
            raise ValueError(f"{fn}(): PyTorch3D cameras have no skew; K[0, 1] must be 0")
        flip = torch.tensor([-1.0, -1.0, 1.0], dtype=self.dtype, device=self.device)
        m, t = self.world_to_cam[:, :3, :3], self.world_to_cam[:, :3, 3]
        rot = (flip[:, None] * m).transpose(1, 2)
        trans = flip * t
        s = min(self.height, self.width) / 2.0
        k = self.K
        focal = torch.stack([k[:, 0, 0], k[:, 1, 1]], -1) / s
        pp = torch.stack([(self.width / 2 - k[:, 0, 2]) / s, (self.height / 2 - k[:, 1, 2]) / s], -1)
        return PyTorch3DCameraParams(rot, trans, focal, pp, (self.height, self.width),
                                     self.projection == "orthographic")

    # -- basic properties ------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return int(self.world_to_cam.shape[0])

    def __len__(self) -> int:
        return self.batch_size

    @property
    def resolution(self) -> tuple[int, int]:
        """``(height, width)``, the order ``rasterize`` takes."""
        return self.height, self.width

    @property
    def dtype(self) -> torch.dtype:
        return self.world_to_cam.dtype

    @property
    def device(self) -> torch.device:
        return self.world_to_cam.device

    def __getitem__(self, idx) -> "Camera":
        """Select views; an int keeps the batch dim (``cam[2]`` has B = 1)."""
        if isinstance(idx, int) and not isinstance(idx, bool):
            if not -self.batch_size <= idx < self.batch_size:
                raise IndexError(f"Camera[{idx}]: index out of range for {self.batch_size} views")
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return dataclasses.replace(self, world_to_cam=self.world_to_cam[idx], K=self.K[idx])

    def scaled(self, factor: int) -> "Camera":
        """The same views at ``factor`` times the resolution (``K`` scaled; differentiable).

        Pixel ``(i, j)`` of the result covers ``1 / factor`` of pixel
        ``(i // factor, j // factor)`` of this camera, so a ``factor x factor`` box
        average of its image is this camera's image, supersampled.
        """
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"Camera.scaled(): factor must be a positive int, got {factor!r}")
        if factor == 1:
            return self
        scale = torch.tensor([factor, factor, 1], dtype=self.K.dtype, device=self.K.device)
        return dataclasses.replace(self, K=self.K * scale[:, None], width=self.width * factor,
                                   height=self.height * factor)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Camera":
        """Move to ``device`` and/or cast to ``dtype`` (float32/float64)."""
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ValueError(f"Camera.to(): dtype must be torch.float32 or torch.float64, got {dtype}")
        return dataclasses.replace(
            self, world_to_cam=self.world_to_cam.to(device=device, dtype=dtype), K=self.K.to(device=device, dtype=dtype)
        )

    # -- matrices --------------------------------------------------------------

    def cam_to_clip(self) -> Tensor:
        """``[B, 4, 4]`` OpenCV camera frame -> clip space (see ``geometry.projection``)."""
        make = perspective_clip_from_K if self.projection == "perspective" else orthographic_clip_from_K
        return make(self.K, self.width, self.height, self.near, self.far)

    def world_to_clip(self) -> Tensor:
        """``[B, 4, 4]`` = ``cam_to_clip() @ world_to_cam``."""
        return self.cam_to_clip() @ self.world_to_cam

    def cam_to_world(self) -> Tensor:
        """``[B, 4, 4]`` inverse of ``world_to_cam`` (OpenCV camera-to-world)."""
        return torch.linalg.inv(self.world_to_cam)

    def cam_to_world_opengl(self) -> Tensor:
        """``[B, 4, 4]`` OpenGL/NeRF camera-to-world (``transform_matrix`` of transforms.json)."""
        return opencv_to_opengl_cam_to_world(self.cam_to_world())

    def camera_center(self) -> Tensor:
        """``[B, 3]`` camera centres in world space (for orthographic: the ray through (cx, cy) at z = 0)."""
        return self.cam_to_world()[:, :3, 3]

    # -- points and rays -------------------------------------------------------

    def _points(self, fn: str, name: str, pts) -> Tensor:
        if not isinstance(pts, Tensor):
            raise TypeError(f"Camera.{fn}(): {name} must be a torch.Tensor [B, V, 3] or [V, 3], got {type(pts).__name__}")
        if pts.ndim not in (2, 3) or pts.shape[-1] != 3 or pts.dtype != self.dtype or pts.device != self.device:
            raise ValueError(f"Camera.{fn}(): {name} must be {str(self.dtype).replace('torch.', '')} [B, V, 3] or "
                             f"[V, 3] on {self.device} (the camera's), got {_desc(pts)} on {pts.device}")
        if pts.ndim == 3 and pts.shape[0] not in (1, self.batch_size):
            raise ValueError(f"Camera.{fn}(): {name} has batch {pts.shape[0]}, the camera has {self.batch_size}")
        return pts

    def project(self, verts_world: Tensor) -> Tensor:
        """World points -> clip space, the ``pos`` argument of ``rasterize``.

        Args:
            verts_world: ``[V, 3]`` (shared by all views) or ``[B, V, 3]``.

        Returns:
            ``[B, V, 4]`` homogeneous clip coordinates. Gradients flow to
            ``verts_world``, ``world_to_cam`` and ``K``.
        """
        p = self._points("project", "verts_world", verts_world)
        return transform_points(self._world_to_clip_fixed(), p)

    def _world_to_clip_fixed(self) -> Tensor:
        """:meth:`world_to_clip`, kept on this camera while ``world_to_cam`` and ``K`` need no gradient
        and are not edited in place (their ``_version``): a fitting loop over fixed views then skips
        the dozen small torch ops (~0.13 ms a call) of building the matrix. Never handed out."""
        if self.world_to_cam.requires_grad or self.K.requires_grad:
            return self.world_to_clip()
        key = (self.world_to_cam._version, self.K._version)
        hit = self.__dict__.get("_clip_cache")
        if hit is None or hit[0] != key:
            hit = (key, self.world_to_clip())
            object.__setattr__(self, "_clip_cache", hit)  # frozen dataclass: a private cache, not a field
        return hit[1]

    def project_to_pixels(self, points_world: Tensor) -> Tensor:
        """World points -> pixel coordinates ``(u, v)`` from the top-left corner.

        ``u = fx x/z + s y/z + cx``, ``v = fy y/z + cy`` in the camera frame
        (orthographic: ``u = fx x + s y + cx``, ``v = fy y + cy``). Pixel (row i,
        col j) has its centre at ``(j + 0.5, i + 0.5)``. Points behind the camera
        give meaningless values.

        Args:
            points_world: ``[V, 3]`` or ``[B, V, 3]``.

        Returns:
            ``[B, V, 2]``. Differentiable.
        """
        p = self._points("project_to_pixels", "points_world", points_world)
        cam = transform_points(self.world_to_cam, p)
        x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
        if self.projection == "perspective":
            x, y = x / z, y / z
        k = self.K[:, None]
        return torch.stack([k[..., 0, 0] * x + k[..., 0, 1] * y + k[..., 0, 2], k[..., 1, 1] * y + k[..., 1, 2]], dim=-1)

    def _pixels_to_cam(self, uv: Tensor, depth: Tensor) -> Tensor:
        """``uv [B, ..., 2]``, depth ``[B, ...]`` -> camera-frame points ``[B, ..., 3]``."""
        extra = (None,) * (uv.ndim - 2)
        k = self.K[(slice(None),) + extra]
        fx, s, cx, fy, cy = k[..., 0, 0], k[..., 0, 1], k[..., 0, 2], k[..., 1, 1], k[..., 1, 2]
        y = (uv[..., 1] - cy) / fy
        x = (uv[..., 0] - cx - s * y) / fx
        if self.projection == "perspective":
            x, y = x * depth, y * depth
        return torch.stack([x, y, depth.expand_as(x)], dim=-1)

    def unproject(self, pixels: Tensor, depth: Tensor) -> Tensor:
        """Pixels and camera-frame depths -> world points (inverse of ``project_to_pixels``).

        Args:
            pixels: ``[B, V, 2]`` pixel coordinates ``(u, v)``.
            depth: ``[B, V]`` camera z (not distance along the ray).

        Returns:
            ``[B, V, 3]`` world points. Differentiable.
        """
        if not isinstance(pixels, Tensor) or not isinstance(depth, Tensor):
            raise TypeError("Camera.unproject(): pixels and depth must be torch.Tensors")
        if pixels.ndim != 3 or pixels.shape[-1] != 2 or depth.shape != pixels.shape[:-1]:
            raise ValueError(f"Camera.unproject(): need pixels [B, V, 2] and depth [B, V], got {_desc(pixels)} and "
                             f"{_desc(depth)}")
        cam = self._pixels_to_cam(pixels, depth)
        c2w = self.cam_to_world()
        return torch.matmul(cam, c2w[:, :3, :3].transpose(1, 2)) + c2w[:, None, :3, 3]

    def rays(self, normalize: bool = True) -> Rays:
        """World rays through every pixel centre ``(j + 0.5, i + 0.5)``.

        Args:
            normalize: unit directions (default). With ``False``, perspective
                directions have camera-frame z = 1, so ``t`` along a ray is depth.

        Returns:
            :class:`Rays` ``(origins [B, H, W, 3], dirs [B, H, W, 3])``; row 0 is the
            top of the image. Differentiable w.r.t. ``world_to_cam`` and ``K``.
        """
        b, h, w = self.batch_size, self.height, self.width
        j = torch.arange(w, dtype=self.dtype, device=self.device) + 0.5
        i = torch.arange(h, dtype=self.dtype, device=self.device) + 0.5
        gi, gj = torch.meshgrid(i, j, indexing="ij")
        uv = torch.stack([gj, gi], dim=-1).expand(b, h, w, 2)
        c2w = self.cam_to_world()
        rot = c2w[:, None, None, :3, :3]
        ones = torch.ones((b, h, w), dtype=self.dtype, device=self.device)
        if self.projection == "perspective":
            dirs = (rot @ self._pixels_to_cam(uv, ones)[..., None])[..., 0]
            origins = c2w[:, None, None, :3, 3].expand(b, h, w, 3)
        else:
            dirs = c2w[:, None, None, :3, 2].expand(b, h, w, 3)
            origins = (rot @ self._pixels_to_cam(uv, ones * 0)[..., None])[..., 0] + c2w[:, None, None, :3, 3]
        if normalize or self.projection == "orthographic":
            dirs = torch.nn.functional.normalize(dirs, dim=-1)
        return Rays(origins, dirs)

