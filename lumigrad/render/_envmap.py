"""Environment-map lookup and importance sampling for :func:`lumigrad.render.path.render_trace`.

Lookup (:meth:`EnvMap.eval`) follows Mitsuba 3's ``envmap`` exactly (bilinear,
column ``u W - 0.5`` periodic, row ``v (H - 1)`` clamped; see
:class:`~lumigrad.scene.trace_types.EnvironmentLight`) and is differentiable
w.r.t. the texels (a gather and a weighted sum).

Sampling: the unit square of ``(u, v)`` is cut into ``H x W`` equal cells; a
cell is picked with probability proportional to ``(max luminance of the
bilinear image over the cell's 3 x 3 probe points + a floor) * sin(theta)`` at its
centre, then ``(u, v)`` is uniform inside it. The floor (1e-3 of the mean)
keeps the density positive wherever the image is, so the estimator is unbiased
even where the piecewise-constant density and the bilinear image disagree. The
solid-angle density is ``p_cell H W / (2 pi^2 sin(theta))``. Densities are
computed without gradients: the estimator ``L(w) / pdf(w)`` then has the
unbiased gradient ``dL(w)/dtexels / pdf(w)``. A ``to_world`` rotation maps the
map's frame to the world: lookups and densities rotate world directions into the
map's frame first, samples are rotated out of it (a rotation keeps solid angle,
so densities are unchanged).

The reference for all of this is the formula itself; ``tests/trace/test_envmap.py``
checks the lookup against a brute-force equirectangular integral and the
sampler's density against a histogram.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.scene.trace_types import EnvironmentLight

__all__ = ["EnvMap"]

_LUMA = (0.2126, 0.7152, 0.0722)


def _uv(d: Tensor) -> tuple[Tensor, Tensor]:
    u = torch.atan2(d[:, 0], -d[:, 2]) / (2 * math.pi)
    u = u - torch.floor(u)
    v = torch.acos(d[:, 1].clamp(-1.0, 1.0)) / math.pi
    return u, v


def _dir(u: Tensor, v: Tensor) -> Tensor:
    th, ph = math.pi * v, 2 * math.pi * u
    s = torch.sin(th)
    return torch.stack([s * torch.sin(ph), torch.cos(th), -s * torch.cos(ph)], -1)


class EnvMap:
    """Per-render view of an :class:`EnvironmentLight`: lookup, density and sampler."""

    def __init__(self, light: EnvironmentLight, dtype: torch.dtype, device: torch.device) -> None:
        t = light.texels
        if t.device != device:
            raise ValueError(f"render_trace(): the EnvironmentLight's texels are on {t.device}, the scene on {device}")
        self.texels = t.to(dtype) * float(light.scale)  # [H, W, 3], keeps the graph
        self.H, self.W = int(t.shape[0]), int(t.shape[1])
        # Row vectors: map-frame d_map = d_world @ rot, world d_world = d_map @ rot^T.
        self.rot = None if light.to_world is None else light.to_world.to(dtype=dtype, device=device)
        with torch.no_grad():
            H, W = self.H, self.W
            # 3 x 3 probe points per cell (corners, edge midpoints, centre).
            gu = torch.arange(2 * W + 1, dtype=dtype, device=device) / (2 * W)
            gv = torch.arange(2 * H + 1, dtype=dtype, device=device) / (2 * H)
            vv, uu = torch.meshgrid(gv, gu, indexing="ij")
            lum = self._lookup(self.texels.detach(), uu.reshape(-1), vv.reshape(-1))
            lum = (lum * torch.tensor(_LUMA, dtype=dtype, device=device)).sum(-1).reshape(2 * H + 1, 2 * W + 1)
            m = torch.nn.functional.max_pool2d(lum[None, None], 3, stride=2)[0, 0]  # [H, W]
            m = m + 1e-3 * lum.mean() + 1e-12
            sin_c = torch.sin(math.pi * (torch.arange(H, dtype=dtype, device=device) + 0.5) / H)
            w = m * sin_c[:, None]
            self.cell_prob = (w / w.sum()).reshape(-1)  # [H * W]

    def _lookup(self, tex: Tensor, u: Tensor, v: Tensor) -> Tensor:
        H, W = self.H, self.W
        pu = u * W - 0.5
        x0 = torch.floor(pu)
        fx = (pu - x0)[:, None]
        x0 = x0.long() % W
        x1 = (x0 + 1) % W
        pv = (v * (H - 1)).clamp(0.0, H - 1)
        y0 = torch.floor(pv).clamp(max=H - 2)
        fy = (pv - y0)[:, None]
        y0 = y0.long()
        y1 = y0 + 1
        return ((1 - fx) * ((1 - fy) * tex[y0, x0] + fy * tex[y1, x0])
                + fx * ((1 - fy) * tex[y0, x1] + fy * tex[y1, x1]))

    def _to_map(self, d: Tensor) -> Tensor:
        return d if self.rot is None else d @ self.rot

    def eval(self, d: Tensor) -> Tensor:
        """``[R, 3]`` radiance arriving from unit directions ``d [R, 3]`` (differentiable w.r.t. the texels)."""
        u, v = _uv(self._to_map(d.detach()))
        return self._lookup(self.texels, u, v)

    def pdf(self, d: Tensor) -> Tensor:
        """``[R]`` solid-angle density of :meth:`sample` at unit directions ``d`` (no gradient)."""
        with torch.no_grad():
            u, v = _uv(self._to_map(d))
            j = (u * self.W).long().clamp(0, self.W - 1)
            i = (v * self.H).long().clamp(0, self.H - 1)
            s = torch.sin(math.pi * v).clamp_min(1e-12)
            return self.cell_prob[i * self.W + j] * (self.H * self.W) / (2 * math.pi**2 * s)

    def sample(self, n: int, gen) -> tuple[Tensor, Tensor]:
        """``(dirs [n, 3], pdf [n])``: ``n`` directions drawn from the luminance distribution (no gradient).
        ``gen``: a ``torch.Generator``, or the Sobol sampler's draws of ``n`` paths (:mod:`lumigrad.render._sampler`:
        the cell picked by inverse CDF)."""
        with torch.no_grad():
            dt, dev = self.cell_prob.dtype, self.cell_prob.device
            if hasattr(gen, "env"):
                u = gen.env().to(dt)
                cdf = torch.cumsum(self.cell_prob, 0)
                cell = torch.searchsorted(cdf / cdf[-1], u[:, 0].contiguous(), right=True).clamp_max(cdf.shape[0] - 1)
                r = u[:, 1:]
            else:
                cell = torch.multinomial(self.cell_prob, n, replacement=True, generator=gen)
                r = torch.rand(n, 2, generator=gen, dtype=dt, device=dev)
            u = ((cell % self.W).to(dt) + r[:, 0]) / self.W
            v = ((cell // self.W).to(dt) + r[:, 1]) / self.H
            d = _dir(u, v)
            if self.rot is not None:
                d = d @ self.rot.T
            s = torch.sin(math.pi * v).clamp_min(1e-12)
            return d, self.cell_prob[cell] * (self.H * self.W) / (2 * math.pi**2 * s)
