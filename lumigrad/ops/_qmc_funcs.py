"""Warp functions of the Sobol sampler (``TraceSettings(sampler="sobol")``): shuffled, Owen-scrambled Sobol points.

Burley 2020 ("Practical hash-based Owen scrambling", JCGT 9(4)) with the permutation hash of pbrt-v4's
``FastOwenScrambler`` (Vegdahl's): sample ``s`` of a pixel takes, for each *dimension pair* ``d`` it asks for,
the point of index ``pi(s)`` of the first two Sobol dimensions, each coordinate Owen-scrambled (``pi``: a random
permutation of ``0 .. 2^m - 1``, ``2^m >= spp``, an Owen scramble of the index's bits); every
``(pixel, d)`` has its own seeds (hashes of the sampler key, which mixes the render seed and the pixel, and of
``d``). Why this construction:

* the shuffle permutes the first ``2^m`` points, so the ``spp`` samples of a pixel are a ``(0, m, 2)``-net when
  ``spp = 2^m`` (one point in every elementary interval of area ``2^-m``), while pairs ``d != d'`` are paired at
  random ("padding": no correlation between, say, the light sample and the BSDF sample of one path). Burley
  scrambles all 32 index bits, which moves the block to a random place in the sequence; keeping it at the start
  bounds Sobol's per-bit loop by ``m`` (the forward kernel took 1.37x the independent sampler's time with 32 bits);
* Owen scrambling keeps the net and makes every point uniform on ``[0, 1)^2`` (unbiased), and, unlike an XOR
  scramble, decorrelates the pixels and gives the ``O(n^{-3/2})`` variance of smooth integrands;
* all of it is a pure function of ``(key, s, d)``: path replay re-draws the same numbers without state.

Cost: ~25-40 ns of integer arithmetic per pair on this CPU (three hashes, two 32-bit reversals, short loops
over ``m`` bits; a data-dependent branch per bit was no cheaper); the path kernel draws pairs for its first two
vertices only (:mod:`lumigrad.ops._path_kernels`) and takes 1.15x the independent sampler's time on the Cornell box
(64^2, 16 spp, 3 bounces, one thread, paired runs). The pure-torch reference is :mod:`lumigrad.ops._qmc_ref`
(same bits, built from the textbook formulas: ``owen(x) = reverse(hash(reverse(x)))``).
"""
from __future__ import annotations

import warp as wp

__all__ = ["QMC_BOUNCES", "qmc_bits", "qmc_key", "qmc2"]

# The path tracers (kernel and torch) stratify the pairs of the first QMC_BOUNCES vertices; later ones draw independent
# numbers. Cornell box, 64^2, 16 spp, 3 bounces, 48 seeds: relative MSE 0.00106 with Sobol sub-pixel offsets only,
# 0.00095 with the first vertex's dimensions as well, the same (to 5 digits) with 2 or all 3; each pair costs
# ~25-40 ns of arithmetic (hashes, bit reversals), so the deeper ones are left out.
QMC_BOUNCES = 2

_M1 = wp.constant(wp.uint32(0x55555555))
_M2 = wp.constant(wp.uint32(0x33333333))
_M4 = wp.constant(wp.uint32(0x0F0F0F0F))
_M8 = wp.constant(wp.uint32(0x00FF00FF))
_PHI = wp.constant(wp.uint32(0x9E3779B9))  # 2^32 / golden ratio (a module constant: as a literal it is an int32)
_TO_UNIT = wp.constant(5.9604644775390625e-08)  # 2^-24: the top 24 bits as a float in [0, 1)


@wp.func
def _reverse(x: wp.uint32):
    x = ((x >> wp.uint32(1)) & _M1) | ((x & _M1) << wp.uint32(1))
    x = ((x >> wp.uint32(2)) & _M2) | ((x & _M2) << wp.uint32(2))
    x = ((x >> wp.uint32(4)) & _M4) | ((x & _M4) << wp.uint32(4))
    x = ((x >> wp.uint32(8)) & _M8) | ((x & _M8) << wp.uint32(8))
    return (x >> wp.uint32(16)) | (x << wp.uint32(16))


@wp.func
def _lk(x: wp.uint32, seed: wp.uint32):
    """Vegdahl's hash: each output bit depends only on the input bits below it (and the seed)."""
    x = x ^ (x * wp.uint32(0x3D20ADEA))
    x = x + seed
    x = x * ((seed >> wp.uint32(16)) | wp.uint32(1))
    x = x ^ (x * wp.uint32(0x05526C56))
    return x ^ (x * wp.uint32(0x53A22864))


@wp.func
def _reverse_low(x: wp.uint32, m: int):
    """The low ``m`` bits of ``x``, reversed (``_reverse(x) >> (32 - m)`` for ``x < 2^m``), in ``m`` steps."""
    y = wp.uint32(0)
    for k in range(m):
        y = (y << wp.uint32(1)) | ((x >> wp.uint32(k)) & wp.uint32(1))
    return y


@wp.func
def _sobol1_reversed(i: wp.uint32, m: int):
    """Sobol's second dimension of index ``i < 2^m``, bit-reversed: the XOR of the reversed direction numbers
    (``r_0 = 1``, ``r_{k+1} = r_k ^ r_k << 1``; the numbers are ``v_0 = 2^31``, ``v_{k+1} = v_k ^ v_k >> 1``) over the
    set bits ``k`` of ``i``. Reversed, because the Owen scramble works on reversed bits; ``m`` steps without
    branches (a data-dependent branch per bit cost more than the arithmetic)."""
    r = wp.uint32(1)
    y = wp.uint32(0)
    for k in range(m):
        y = y ^ (r & (wp.uint32(0) - ((i >> wp.uint32(k)) & wp.uint32(1))))
        r = r ^ (r << wp.uint32(1))
    return y


@wp.func
def _mix(a: wp.uint32, b: wp.uint32):
    """A 32-bit hash of ``(a, b)`` (the ``lowbias32`` finaliser of Wellons' hash prospector on ``a ^ b * phi``)."""
    x = a ^ (b * _PHI)
    x = x ^ (x >> wp.uint32(16))
    x = x * wp.uint32(0x21F0AAAD)
    x = x ^ (x >> wp.uint32(15))
    x = x * wp.uint32(0x735A2D97)
    return x ^ (x >> wp.uint32(15))


@wp.func
def qmc_key(seed: int, pixel: int):
    """The sampler key of a pixel (``seed``: the render's 31-bit sampler seed)."""
    return _mix(wp.uint32(seed), wp.uint32(pixel))


@wp.func
def qmc_bits(spp: int):
    """``m`` with ``2^(m-1) < spp <= 2^m``: a pixel's samples are shuffled inside the first ``2^m`` points."""
    m = int(0)
    while (1 << m) < spp:
        m += 1
    return m


@wp.func
def qmc2(key: wp.uint32, s: int, m: int, d: int):
    """``vec2`` in ``[0, 1)^2``: dimension pair ``d`` of sample ``s < 2^m`` of the pixel with sampler key ``key``."""
    h = _mix(key, wp.uint32(d))
    # Owen scrambles written as reverse(_lk(reverse(.))) with the inner reverses folded in (reverse(reverse(i)) = i,
    # reverse(sobol(i)) built directly): 2 full bit reversals per pair instead of 8 (kernel time 1.24x -> see docs).
    i = _reverse_low(_lk(_reverse_low(wp.uint32(s), m), h), m)  # a random permutation of 0 .. 2^m - 1
    # Each coordinate's scramble seed a full hash of the pair's: with Burley's cheaper hash_combine the two
    # seeds' lowest bits, which decide the top bits' flips, were always opposite, so at 1 and 2 spp every
    # point lay in the quadrants x < 1/2 <= y or y < 1/2 <= x (a biased estimator; tests/ops/test_qmc.py).
    x = _reverse(_lk(i, _mix(h, wp.uint32(1))))  # Sobol's first dimension (i reversed), Owen-scrambled
    y = _reverse(_lk(_sobol1_reversed(i, m), _mix(h, wp.uint32(2))))
    return wp.vec2(wp.float32(x >> wp.uint32(8)) * _TO_UNIT, wp.float32(y >> wp.uint32(8)) * _TO_UNIT)
