"""The Sobol sampler in the torch path tracer (:func:`lumigrad.render.path._radiance`), as in the fused kernel.

A :class:`SobolDraws` stands where the torch path otherwise passes its ``torch.Generator``: it holds the sampler
key (render seed and pixel) and the sample index of every path being traced, and hands out the numbers of path
vertex ``depth`` at the pair positions of :mod:`lumigrad.ops._path_kernels` (one pair per emitter, two for an
environment map, one for the sky, then the BSDF's direction and its (lobe, roulette) pair), so that the samples of a
pixel are stratified in each of them. Vertices from ``QMC_BOUNCES`` on draw from the chunk's generator, as the kernel
does. The numbers are the kernel's, bit for bit (:func:`lumigrad.ops.trace.qmc_pairs`, one Warp launch; reference
:func:`lumigrad.ops._qmc_ref.qmc2`); the torch path consumes them
with its own code (``torch.searchsorted`` picks), so its paths are not the kernel's, only equally distributed.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.ops.trace import qmc_pairs
from lumigrad.ops._qmc_funcs import QMC_BOUNCES

__all__ = ["SobolDraws", "is_sobol", "pick_and_rescale"]



def is_sobol(gen) -> bool:
    return isinstance(gen, SobolDraws)


class SobolDraws:
    """Sobol numbers for paths with keys ``key [n]`` (int64) and sample indices ``s [n]`` of ``2^m``-blocks, at
    vertex ``depth``; ``layout = (emitters, has_env, has_sky)``; ``gen``: the numbers of deeper vertices."""

    def __init__(self, key: Tensor, s: Tensor, m: int, layout: tuple, gen: torch.Generator, dtype: torch.dtype,
                 depth: int = 0):
        self.key, self.s, self.m, self.layout, self.gen, self.dtype, self.depth = key, s, m, layout, gen, dtype, depth

    def take(self, rows: Tensor) -> SobolDraws:
        """The draws of paths ``rows`` of this set."""
        rows = rows.to(self.key.device)
        return SobolDraws(self.key[rows], self.s[rows], self.m, self.layout, self.gen, self.dtype, self.depth)

    def at(self, depth: int) -> SobolDraws:
        return SobolDraws(self.key, self.s, self.m, self.layout, self.gen, self.dtype, depth)

    def _pairs(self, slot: int, count: int = 1) -> Tensor:
        """``[n, 2 count]``: pairs ``slot ..`` of this vertex (independent numbers past ``QMC_BOUNCES``)."""
        n = self.key.shape[0]
        if self.depth >= QMC_BOUNCES:
            return torch.rand(n, 2 * count, generator=self.gen, dtype=self.dtype, device=self.key.device)
        base = 1 + self.depth * (self._lights() + 2) + slot
        return qmc_pairs(self.key, self.s, self.m, base, count, self.dtype)

    def _lights(self) -> int:
        """Pairs of the light samples of a vertex (the BSDF's two follow)."""
        ne, env, sky = self.layout
        return ne + 2 * env + sky

    def emitter(self, e: int) -> Tensor:
        """``[n, 2]``: (triangle pick, second barycentric coordinate) of emitter ``e``'s sample."""
        return self._pairs(e)

    def env(self) -> Tensor:
        """``[n, 3]``: (cell pick, position in the cell) of the environment map's sample."""
        return self._pairs(self.layout[0], 2)[:, :3]

    def sky(self) -> Tensor:
        return self._pairs(self._lights() - 1)

    def bsdf(self) -> Tensor:
        """``[n, 3]``: the BSDF sample's direction pair and its lobe choice."""
        return self._pairs(self._lights(), 2)[:, :3]

    def roulette(self) -> Tensor:
        return self._pairs(self._lights() + 1)[:, 1]


def pick_and_rescale(cdf: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``(k [n], u' [n])``: the first ``k`` with ``cdf[k] > u`` (area-proportional triangles; the last if none), and
    ``u``'s position inside that step rescaled to ``[0, 1)``, so one number stratifies both (the kernel's remap)."""
    k = torch.searchsorted(cdf, u.contiguous(), right=True).clamp_max(cdf.shape[0] - 1)
    lo = torch.where(k > 0, cdf[(k - 1).clamp_min(0)], torch.zeros_like(u))
    w = (cdf[k] - lo).clamp_min(1e-30)
    return k, ((u - lo) / w).clamp(0.0, 1.0 - torch.finfo(u.dtype).eps)
