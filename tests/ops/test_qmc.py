"""The Sobol sampler (lumigrad.ops._qmc_funcs) against its torch reference, and the properties it is used for."""
import math

import pytest
import torch
import warp as wp

from lumigrad.ops import _qmc_ref as ref
from lumigrad.ops._qmc_funcs import qmc2, qmc_bits, qmc_key


@wp.kernel
def _draw(pix: wp.array(dtype=wp.int32), s: wp.array(dtype=wp.int32), d: wp.array(dtype=wp.int32), seed: int,
          spp: int, keys: wp.array(dtype=wp.uint32), out: wp.array2d(dtype=wp.float32)):
    t = wp.tid()
    key = qmc_key(seed, pix[t])
    v = qmc2(key, s[t], qmc_bits(spp), d[t])
    keys[t] = key
    out[t, 0] = v[0]
    out[t, 1] = v[1]


def _kernel(pix, s, d, seed, spp):
    n = pix.shape[0]
    keys, out = wp.zeros(n, dtype=wp.uint32, device="cpu"), wp.zeros((n, 2), dtype=wp.float32, device="cpu")
    wp.launch(_draw, n, inputs=[wp.from_torch(pix), wp.from_torch(s), wp.from_torch(d), seed, spp, keys, out],
              device="cpu")
    return torch.from_numpy(keys.numpy().astype("int64")), wp.to_torch(out).clone()


def test_kernel_equals_torch_reference_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    n = 4000
    pix = torch.randint(0, 2**31 - 1, (n,), generator=g, dtype=torch.int32)
    d = torch.randint(0, 500, (n,), generator=g, dtype=torch.int32)
    for seed, spp in ((0, 1), (7, 16), (7, 1000), (2**31 - 1, 1 << 24)):
        assert ref.qmc_bits(spp) == {1: 0, 16: 4, 1000: 10, 1 << 24: 24}[spp]
        s = torch.randint(0, spp, (n,), generator=g, dtype=torch.int32)
        keys, pts = _kernel(pix, s, d, seed, spp)
        kr = ref.qmc_key(seed, pix)
        assert torch.equal(keys, kr)
        assert torch.equal(pts, ref.qmc2(kr, s, ref.qmc_bits(spp), d.long()))
    assert bool(((pts >= 0) & (pts < 1)).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_qmc_pairs_op_equals_torch_reference_bit_for_bit(dtype):
    """lumigrad.ops.trace.qmc_pairs (the torch path tracer's draws: one Warp launch for ``count`` pairs, keys with
    the top bit set included) against the reference, pair by pair."""
    from lumigrad.ops.trace import qmc_pairs

    g = torch.Generator().manual_seed(1)
    n = 5000
    key = ref.qmc_key(3, torch.randint(0, 2**31 - 1, (n,), generator=g))
    assert bool((key >= 2**31).any()) and bool((key < 2**31).any())
    for m, d0, count in ((0, 0, 1), (4, 5, 2), (10, 40, 3)):
        s = torch.randint(0, 1 << m, (n,), generator=g)
        got = qmc_pairs(key, s, m, d0, count, dtype)
        want = torch.cat([ref.qmc2(key, s, m, d0 + k, dtype) for k in range(count)], -1)
        assert got.dtype == dtype and torch.equal(got, want)
    assert qmc_pairs(key[:0], s[:0], 4, 0, 2).shape == (0, 4)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_a_pixels_samples_form_a_net_in_every_dimension_pair(m):
    """The 2^m samples of a pixel, in any dimension pair, put one point in every elementary interval of area 2^-m
    (a (0, m, 2)-net), for every pixel and pair: the stratification the sampler is for."""
    n = 1 << m
    for pixel in range(6):
        key = ref.qmc_key(3, torch.full((n,), pixel))
        for d in (0, 1, 5, 77):
            p = ref.qmc2(key, torch.arange(n), m, d, torch.float64)
            for a in range(m + 1):
                cells = torch.floor(p[:, 0] * 2**a) * 2 ** (m - a) + torch.floor(p[:, 1] * 2 ** (m - a))
                assert torch.unique(cells).numel() == n, (pixel, d, a)


def test_points_are_uniform_and_pairs_uncorrelated():
    """Over many pixels a sample's coordinates are uniform (mean 1/2, variance 1/12) and different dimension pairs
    of one sample, or one pair of two pixels, are uncorrelated (what makes the estimator unbiased and padded)."""
    n = 20000
    key = ref.qmc_key(11, torch.arange(n))
    s = torch.full((n,), 5)
    a = ref.qmc2(key, s, 4, 1, torch.float64)
    b = ref.qmc2(key, s, 4, 2, torch.float64)
    other = ref.qmc2(ref.qmc_key(11, torch.arange(n) + n), s, 4, 1, torch.float64)
    tol = 4.0 / math.sqrt(n)
    assert float((a.mean(0) - 0.5).abs().max()) < tol
    assert float((a.var(0) - 1 / 12).abs().max()) < tol / 4
    for u, v in ((a[:, 0], a[:, 1]), (a[:, 0], b[:, 0]), (a[:, 1], b[:, 1]), (a[:, 0], other[:, 0])):
        assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < tol
    # A different seed gives other points.
    assert not torch.equal(a, ref.qmc2(ref.qmc_key(12, torch.arange(n)), s, 4, 1, torch.float64))
    # The shuffle permutes a pixel's block: 16 samples use 16 distinct points (sample 5 above is one of them).
    blk = ref.qmc2(key[:1].expand(16), torch.arange(16), 4, 1, torch.float64)
    assert torch.unique(blk[:, 0]).numel() == 16 and bool((blk == a[:1]).all(1).any())


def test_each_sample_is_uniform_in_the_square_at_every_spp():
    """One sample of a pixel, over pixels (keys), is uniform in [0, 1)^2 jointly, not only per coordinate: the
    coordinates' scramble seeds used to be hash-combined from the pair's with always-opposite lowest bits, which
    put every point of 1- and 2-spp pixels in the quadrants x < 1/2 <= y or y < 1/2 <= x."""
    from lumigrad.ops import _qmc_ref as q

    n = 20000
    for spp in (1, 2, 3, 4, 8):
        keys = q.qmc_key(11, torch.arange(n).repeat_interleave(spp))
        for pair in (0, 1, 5):
            u = q.qmc2(keys, torch.arange(spp).repeat(n), q.qmc_bits(spp), pair, torch.float64)
            quad = torch.bincount((u[:, 0] >= 0.5).long() * 2 + (u[:, 1] >= 0.5).long(), minlength=4) / u.shape[0]
            assert float((quad - 0.25).abs().max()) < 0.02, (spp, pair, quad)
            assert abs(float(torch.corrcoef(u.T)[0, 1])) < 0.03, (spp, pair)
