"""3D Gaussian splatting scene: parameters, SH colours, adaptive density control and 3DGS PLY IO.

Parameterisation as in 3DGS (Kerbl et al. 2023): ``means [N, 3]``, ``log_scales
[N, 3]``, ``quats [N, 4] (w, x, y, z)`` (normalised on use), ``opacity_logits
[N]``, SH coefficients ``sh [N, 16, 3]`` (degree <= 3, DC first). The PLY layout
is the reference implementation's (``x y z nx ny nz f_dc_0..2 f_rest_0..44
opacity scale_0..2 rot_0..3``, ``f_rest`` channel-major), so files open in
common 3DGS viewers.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lumigrad._runtime.files import atomic_path

__all__ = ["GaussianModel", "eval_sh", "sh_basis", "SH_C0", "DensityControl"]

SH_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
       1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Real spherical-harmonic basis up to ``degree`` (<= 3) at unit ``dirs [N, 3]`` -> ``[N, (degree + 1)^2]``."""
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_basis(): degree must be in [0, 3], got {degree}")
    cols = [torch.full_like(dirs[:, 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        cols += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        cols += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy)]
    if degree >= 3:
        cols += [_C3[0] * y * (3 * xx - yy), _C3[1] * xy * z, _C3[2] * y * (4 * zz - xx - yy),
                 _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy), _C3[5] * z * (xx - yy),
                 _C3[6] * x * (xx - 3 * yy)]
    return torch.stack(cols, -1)


def eval_sh(degree: int, sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to ``degree`` (<= 3): ``sh [N, >=(d+1)^2, C]``, unit ``dirs [N, 3]`` -> ``[N, C]``.

    One broadcast product of :func:`sh_basis` with the coefficients, so the
    backward is one product too (no per-coefficient slices of ``sh``).
    """
    basis = sh_basis(degree, dirs)
    return (basis[:, :, None] * sh[:, : basis.shape[1]]).sum(1)


_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


class GaussianModel(nn.Module):
    """A set of N anisotropic 3D Gaussians with SH colours (degree <= 3)."""

    def __init__(self, means: torch.Tensor, log_scales: torch.Tensor, quats: torch.Tensor,
                 opacity_logits: torch.Tensor, sh_dc: torch.Tensor, sh_rest: torch.Tensor):
        super().__init__()
        N = means.shape[0]
        shapes = {"means": (N, 3), "log_scales": (N, 3), "quats": (N, 4), "opacity_logits": (N,), "sh_dc": (N, 1, 3),
                  "sh_rest": (N, 15, 3)}
        for name, t in zip(_NAMES, (means, log_scales, quats, opacity_logits, sh_dc, sh_rest)):
            if tuple(t.shape) != shapes[name]:
                raise ValueError(f"GaussianModel(): {name} must be {list(shapes[name])}, got {list(t.shape)}")
            setattr(self, name, nn.Parameter(t.detach().clone().float()))

    @classmethod
    def random_init(cls, n: int, extent: float, generator: torch.Generator | None = None,
                    opacity: float = 0.1) -> "GaussianModel":
        """``n`` Gaussians uniform in ``[-extent, extent]^3``, grey, isotropic, spacing-sized."""
        means = (torch.rand(n, 3, generator=generator) * 2 - 1) * extent
        s = math.log(2 * extent / n ** (1 / 3) * 0.5)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1
        logit = math.log(opacity / (1 - opacity))
        sh_dc = (torch.rand(n, 1, 3, generator=generator) - 0.5) * 0.2
        return cls(means, torch.full((n, 3), s), quats, torch.full((n,), logit), sh_dc, torch.zeros(n, 15, 3))

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    def sh(self) -> torch.Tensor:
        return torch.cat([self.sh_dc, self.sh_rest], 1)

    def colors(self, cam_center: torch.Tensor, degree: int) -> torch.Tensor:
        """``[N, 3]`` RGB seen from ``cam_center [3]``: ``max(SH(dir) + 0.5, 0)`` (3DGS convention)."""
        dirs = torch.nn.functional.normalize(self.means - cam_center, dim=-1)
        return torch.clamp_min(eval_sh(degree, self.sh(), dirs) + 0.5, 0.0)

    # -- PLY ---------------------------------------------------------------

    def save_ply(self, path) -> Path:
        """Write the standard 3DGS binary PLY atomically."""
        N = len(self)
        names = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)]
                 + [f"f_rest_{i}" for i in range(45)] + ["opacity"] + [f"scale_{i}" for i in range(3)]
                 + [f"rot_{i}" for i in range(4)])
        with torch.no_grad():
            cols = [self.means, torch.zeros(N, 3), self.sh_dc[:, 0, :],
                    self.sh_rest.transpose(1, 2).reshape(N, 45), self.opacity_logits[:, None], self.log_scales,
                    self.quats]
            data = torch.cat([c.float().cpu() for c in cols], 1).numpy().astype("<f4")
        header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % N
        header += "".join(f"property float {n}\n" for n in names) + "end_header\n"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(header.encode("ascii"))
                f.write(np.ascontiguousarray(data).tobytes())
        return Path(path)

    @classmethod
    def load_ply(cls, path) -> "GaussianModel":
        """Read a 3DGS PLY (binary little-endian float properties; SH degree 0-3).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a PLY, no vertices, missing 3DGS properties, or NaN/inf values (the file is named).
        """
        fn = "GaussianModel.load_ply"
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{fn}(): no such file: {p}")
        raw = p.read_bytes()
        end = raw.find(b"end_header\n")
        if not raw.startswith(b"ply") or end < 0:
            raise ValueError(f"{fn}(): {p} is not a PLY file (no 'ply' magic / 'end_header')")
        lines = raw[:end].decode("ascii", "replace").splitlines()
        if "format binary_little_endian 1.0" not in [ln.strip() for ln in lines]:
            raise ValueError(f"{fn}(): {p} must be binary_little_endian (as 3DGS writes it)")
        n, props, in_vertex = None, [], False
        _types = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8", "uchar": "u1", "uint8": "u1",
                  "int": "<i4", "int32": "<i4", "uint": "<u4", "short": "<i2", "ushort": "<u2", "char": "i1"}
        for ln in lines:
            t = ln.split()
            if t[:1] == ["element"]:
                in_vertex = t[1] == "vertex"
                if in_vertex:
                    n = int(t[2])
            elif t[:1] == ["property"] and in_vertex:
                if t[1] == "list" or t[1] not in _types:
                    raise ValueError(f"{fn}(): {p} has an unsupported vertex property {' '.join(t[1:])!r}")
                props.append((t[2], _types[t[1]]))
        if not n:
            raise ValueError(f"{fn}(): {p} has no Gaussians (element vertex count is {n or 0})")
        names = [a for a, _ in props]
        need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [f"scale_{i}" for i in range(3)] + \
               [f"rot_{i}" for i in range(4)]
        missing = [k for k in need if k not in names]
        if missing:
            raise ValueError(f"{fn}(): {p} lacks the 3DGS properties {missing}")
        dt = np.dtype(props)
        body = raw[end + len(b"end_header\n"):]
        if len(body) < n * dt.itemsize:
            raise ValueError(f"{fn}(): {p} is truncated: {n} vertices need {n * dt.itemsize} bytes, has {len(body)}")
        arr = np.frombuffer(body[: n * dt.itemsize], dtype=dt)

        def cols(keys):
            return torch.from_numpy(np.stack([arr[k].astype(np.float32) for k in keys], 1))

        n_rest = sum(1 for k in names if k.startswith("f_rest_"))
        if n_rest not in (0, 9, 24, 45):
            raise ValueError(f"{fn}(): {p} has {n_rest} f_rest properties; expected 0, 9, 24 or 45 (SH degree 0-3)")
        rest = torch.zeros(n, 15, 3)
        if n_rest:
            k = n_rest // 3
            rest[:, :k] = cols([f"f_rest_{i}" for i in range(n_rest)]).view(n, 3, k).transpose(1, 2)
        fields = {"means": cols(["x", "y", "z"]), "opacity": cols(["opacity"])[:, 0],
                  "scales": cols([f"scale_{i}" for i in range(3)]), "rotations": cols([f"rot_{i}" for i in range(4)]),
                  "f_dc": cols(["f_dc_0", "f_dc_1", "f_dc_2"]), "f_rest": rest}
        for name, t in fields.items():
            if not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).any(-1).sum()) if t.ndim > 1 else int((~torch.isfinite(t)).sum())
                raise ValueError(f"{fn}(): {p} has NaN or inf values in {name} ({bad} of {n} Gaussians)")
        if bool((fields["rotations"].norm(dim=-1) == 0).any()):
            raise ValueError(f"{fn}(): {p} has zero-length rotation quaternions")
        return cls(fields["means"], fields["scales"], fields["rotations"], fields["opacity"], fields["f_dc"][:, None],
                   rest)


class DensityControl:
    """3DGS adaptive density control: clone small / split large high-gradient Gaussians, prune, reset opacity.

    Call :meth:`accumulate` after each backward (with the screen-space mean
    gradients of the visible Gaussians), then :meth:`densify_and_prune` every
    few hundred steps and :meth:`reset_opacity` now and then. Each edit rebuilds
    the Adam state of the changed rows (zeros for new ones).

    Args:
        extent: scene radius (clone vs split threshold is ``0.01 * extent``).
        grad_threshold: mean screen-space gradient norm (NDC units) that triggers densification.
        min_opacity: prune below this opacity.
        max_gaussians: stop densifying beyond this count.
    """

    def __init__(self, extent: float, grad_threshold: float = 2e-4, min_opacity: float = 0.005,
                 max_gaussians: int = 300_000):
        self.extent = float(extent)
        self.grad_threshold = grad_threshold
        self.min_opacity = min_opacity
        self.max_gaussians = max_gaussians
        self.grad_sum: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def state_dict(self) -> dict:
        return {"grad_sum": self.grad_sum, "count": self.count}

    def load_state_dict(self, s: dict) -> None:
        self.grad_sum, self.count = s["grad_sum"], s["count"]

    def accumulate(self, n_total: int, visible: torch.Tensor, grad_means2d: torch.Tensor, width: int, height: int):
        """Add ``|dL/d means2d|`` (scaled to NDC) of the ``visible`` ids."""
        if self.grad_sum is None or self.grad_sum.shape[0] != n_total:
            self.grad_sum = torch.zeros(n_total)
            self.count = torch.zeros(n_total)
        g = grad_means2d.detach() * torch.tensor([width / 2.0, height / 2.0])
        self.grad_sum.index_add_(0, visible, g.norm(dim=-1))
        self.count.index_add_(0, visible, torch.ones(visible.shape[0]))

    @torch.no_grad()
    def densify_and_prune(self, model: GaussianModel, opt: torch.optim.Optimizer,
                          generator: torch.Generator | None = None) -> dict:
        """Clone, split and prune; return counts."""
        N = len(model)
        stats = {"cloned": 0, "split": 0, "pruned": 0}
        if self.grad_sum is not None and self.grad_sum.shape[0] == N and N < self.max_gaussians:
            avg = self.grad_sum / self.count.clamp(min=1)
            big = avg >= self.grad_threshold
            room = self.max_gaussians - N
            max_scale = model.scales.max(-1).values
            clone = big & (max_scale <= 0.01 * self.extent)
            split = big & ~clone
            clone_idx = clone.nonzero().flatten()[:room]
            split_idx = split.nonzero().flatten()[: max(0, (room - clone_idx.numel()))]
            # split: two children sampled from the parent, scales / 1.6; the parent is removed below
            if split_idx.numel():
                from lumigrad.ops.splat import _quat_to_rotmat

                s = model.scales[split_idx].repeat(2, 1)
                R = _quat_to_rotmat(model.quats[split_idx]).repeat(2, 1, 1)
                z = torch.randn(s.shape, generator=generator) * s
                new_means = model.means[split_idx].repeat(2, 1) + (R @ z[..., None])[..., 0]
                split_new = {"means": new_means, "log_scales": torch.log(s / 1.6)}
            rows = {}
            for name in _NAMES:
                p = getattr(model, name)
                parts = [p.data]
                if clone_idx.numel():
                    parts.append(p.data[clone_idx])
                if split_idx.numel():
                    parts.append(split_new[name] if name in split_new else p.data[split_idx].repeat(2, *[1] * (p.ndim - 1)))
                rows[name] = torch.cat(parts)
            keep = torch.ones(rows["means"].shape[0], dtype=torch.bool)
            keep[split_idx] = False
            new_count = rows["means"].shape[0] - N
            _replace(model, opt, rows, N, new_count)
            stats["cloned"], stats["split"] = int(clone_idx.numel()), int(split_idx.numel())
            self._prune(model, opt, keep)
        opac = model.opacities
        big_ws = model.scales.max(-1).values > 0.1 * self.extent
        keep = (opac >= self.min_opacity) & ~big_ws
        stats["pruned"] = int((~keep).sum())
        self._prune(model, opt, keep)
        self.grad_sum = None
        self.count = None
        return stats

    def _prune(self, model, opt, keep: torch.Tensor) -> None:
        if bool(keep.all()):
            return
        _select(model, opt, keep)

    @torch.no_grad()
    def reset_opacity(self, model: GaussianModel, opt: torch.optim.Optimizer, value: float = 0.01) -> None:
        """Clamp every opacity to at most ``value`` and zero its Adam moments (3DGS's opacity reset)."""
        new = torch.minimum(model.opacity_logits.data, torch.full_like(model.opacity_logits, math.log(value / (1 - value))))
        model.opacity_logits.data.copy_(new)
        st = opt.state.get(model.opacity_logits, {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in st:
                st[k].zero_()


def _swap_param(model, opt, name, new_data, state_fn):
    old = getattr(model, name)
    new = nn.Parameter(new_data)
    for g in opt.param_groups:
        for i, p in enumerate(g["params"]):
            if p is old:
                g["params"][i] = new
    if old in opt.state:
        st = opt.state.pop(old)
        for k in ("exp_avg", "exp_avg_sq"):
            if k in st:
                st[k] = state_fn(st[k])
        opt.state[new] = st
    setattr(model, name, new)


def _replace(model, opt, rows: dict, n_old: int, n_new: int) -> None:
    for name in _NAMES:
        _swap_param(model, opt, name, rows[name],
                    lambda s: torch.cat([s, s.new_zeros((n_new, *s.shape[1:]))]))


def _select(model, opt, keep: torch.Tensor) -> None:
    for name in _NAMES:
        _swap_param(model, opt, name, getattr(model, name).data[keep], lambda s: s[keep])
