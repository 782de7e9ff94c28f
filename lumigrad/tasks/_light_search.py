"""Coarse, global search for directional and point lights before gradient refinement.

A gradient fit of a light direction has local minima (a light behind the object
lights nothing the cameras see; two lights can swap). The image is linear in
the light colours, though, so every candidate set of light directions (or
positions) can be scored exactly by a least-squares solve for its colours.

:func:`gbuffer` renders the known mesh and material once under a unit ambient
light: that gives the diffuse albedo ``kd`` of every covered pixel, its normal
and its world position. A candidate directional light ``d`` of unit colour adds
``kd * max(n.d, 0) / pi`` (the diffuse lobe; specular lobes are left out of the
score, the refinement adds them); a point light at ``p`` adds
``kd * max(n.l, 0) / (pi |p - x|^2)``. :func:`search_lights` scores subsets of
candidates (Fibonacci-sphere directions, or positions on shells around the
object) by their non-negative least-squares residual and returns the best.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from lumigrad.ops import interpolate
from lumigrad.scene.lights import AmbientLight

__all__ = ["fibonacci_sphere", "GBuffer", "gbuffer", "search_lights", "point_candidates"]


def fibonacci_sphere(n: int, dtype=torch.float64) -> torch.Tensor:
    """``[n, 3]`` unit directions spread evenly over the whole sphere (Fibonacci lattice)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = torch.sqrt((1 - z * z).clamp_min(0))
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta), z], -1).to(dtype)


@dataclass
class GBuffer:
    """Covered interior pixels of the training views: ``[P, 3]`` each."""

    kd: torch.Tensor  # diffuse albedo (per channel)
    normals: torch.Tensor  # world unit normals
    points: torch.Tensor  # world positions
    target: torch.Tensor  # target colours


def gbuffer(prob, material, max_pixels: int = 40000, seed: int = 0) -> GBuffer:
    """Render ``prob`` (an :class:`~lumigrad.tasks._appearance.AppearanceProblem`) once under a unit ambient light."""
    views = prob.train
    dtype = views.images.dtype
    with torch.no_grad():
        out = prob.render(views, material, [AmbientLight(torch.ones(3, dtype=dtype))])
        verts = prob.mesh.verts if prob.transform is None else prob.transform.apply(prob.mesh.verts)
        pts = interpolate(verts, out.rast, prob.mesh.faces).out
    # Interior pixels only: edge pixels mix object and background.
    keep = (out.alpha[..., 0] > 0.999) & (out.rast[..., 3] > 0)
    if views.masks is not None:
        keep &= views.masks[..., 0] > 0.999
    if prob.ldr:  # clipped highlights do not follow the linear model
        keep &= (views.images < 0.999).all(-1)
    kd, n, p, t = (x[keep] for x in (out.image, out.normals, pts, views.images))
    if kd.shape[0] > max_pixels:
        sel = torch.randperm(kd.shape[0], generator=torch.Generator().manual_seed(seed))[:max_pixels]
        kd, n, p, t = kd[sel], n[sel], p[sel], t[sel]
    return GBuffer(kd, torch.nn.functional.normalize(n, dim=-1), p, t)


def point_candidates(center: torch.Tensor, radius: float, n_dirs: int = 200,
                     shells: tuple[float, ...] = (1.5, 2.5, 4.0, 7.0)) -> torch.Tensor:
    """``[n_dirs * len(shells), 3]`` candidate point-light positions on shells ``radius * s`` around ``center``."""
    d = fibonacci_sphere(n_dirs, center.dtype)
    return torch.cat([center + radius * s * d for s in shells])


def _features(gb: GBuffer, kind: str, cands: torch.Tensor) -> torch.Tensor:
    """``[P, M]`` unit-colour response (before the per-channel albedo) of each candidate."""
    n = gb.normals.to(cands.dtype)
    if kind == "directional":
        return (n @ cands.T).clamp_min(0.0) / math.pi
    pts, out = gb.points.to(cands.dtype), []
    for chunk in cands.split(64):  # [P, 64, 3] at a time
        d = chunk[None, :, :] - pts[:, None, :]
        dist2 = (d * d).sum(-1).clamp_min(1e-12)
        cos = ((n[:, None, :] * d).sum(-1) / dist2.sqrt()).clamp_min(0.0)
        out.append(cos / (math.pi * dist2))
    return torch.cat(out, 1)


def search_lights(gb: GBuffer, kind: str, cands: torch.Tensor, k: int, ambient: bool = True,
                  max_subsets: int = 200000, swap_passes: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
    """Best ``k`` candidates and their non-negative colours.

    Every ``k``-subset is scored when there are at most ``max_subsets`` of
    them, else a greedy selection is improved by swap passes. A subset whose
    least-squares colours are negative in some channel is rejected.

    Returns:
        ``(indices [k], colours [k, 3], ambient colour [3] or None, relative residual)``.
    """
    dtype = torch.float64
    f = _features(gb, kind, cands.to(dtype))  # [P, M]
    kd, tgt = gb.kd.to(dtype), gb.target.to(dtype)
    cols = [f]
    if ambient:
        cols = [torch.ones_like(f[:, :1])] + cols
    base = torch.cat(cols, 1)  # [P, M (+1)]
    off = 1 if ambient else 0
    # Per channel: columns scaled by the albedo. Gram [3, M', M'] and right-hand side [3, M'].
    gram = torch.stack([(base * kd[:, c:c + 1] ** 2).T @ base for c in range(3)])
    rhs = torch.stack([(base * kd[:, c:c + 1]).T @ tgt[:, c] for c in range(3)])
    tt = (tgt * tgt).sum(0)  # [3]

    def score(subsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``subsets [S, k]`` candidate indices -> residual ``[S]`` and colours ``[S, 3, k']``."""
        idx = subsets + off
        if ambient:
            idx = torch.cat([torch.zeros_like(idx[:, :1]), idx], 1)
        g = gram[:, idx[:, :, None], idx[:, None, :]].permute(1, 0, 2, 3)  # [S, 3, k', k']
        b = rhs[:, idx].permute(1, 0, 2)  # [S, 3, k']
        eye = torch.eye(idx.shape[1], dtype=dtype) * (1e-9 * g.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True)[..., None] + 1e-15)
        x = torch.linalg.solve(g + eye, b)
        res = (tt - (b * x).sum(-1)).sum(-1)
        bad = (x < 0).any(-1).any(-1)
        return torch.where(bad, torch.full_like(res, float("inf")), res), x

    m = cands.shape[0]
    if math.comb(m, k) <= max_subsets:
        subsets = torch.tensor(list(itertools.combinations(range(m), k)), dtype=torch.long).reshape(-1, k)
        best_res, best = float("inf"), None
        for chunk in subsets.split(20000):
            r, _ = score(chunk)
            j = int(r.argmin())
            if float(r[j]) < best_res:
                best_res, best = float(r[j]), chunk[j]
        if best is None:  # every subset needed a negative colour: fall back to greedy
            return _greedy(score, m, k, swap_passes, tt)
        sel = best
    else:
        return _greedy(score, m, k, swap_passes, tt)
    r, x = score(sel[None])
    return _unpack(sel, x[0], ambient, float(r[0]) / float(tt.sum()))


def _unpack(sel, x, ambient, rel):
    amb = x[:, 0] if ambient else None
    colors = x[:, 1:].T if ambient else x.T
    return sel, colors, amb, rel


def _greedy(score, m, k, swap_passes, tt):
    sel: list[int] = []
    allc = torch.arange(m)
    for _ in range(k):
        trial = torch.stack([torch.tensor(sel + [int(c)]) for c in allc])
        r, _ = score(trial)
        sel.append(int(r.argmin()))
    for _ in range(swap_passes):
        changed = False
        for i in range(k):
            trial = torch.tensor(sel).repeat(m, 1)
            trial[:, i] = allc
            r, _ = score(trial)
            j = int(r.argmin())
            if j != sel[i] and j not in sel:
                sel[i] = j
                changed = True
        if not changed:
            break
    s = torch.tensor(sel)
    r, x = score(s[None])
    ambient = x.shape[-1] == k + 1
    return _unpack(s, x[0], ambient, float(r[0]) / float(tt.sum()))
