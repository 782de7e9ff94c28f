import math

import pytest
import torch

from lumigrad.ops._splat_ref import rasterize_gaussians_ref
from lumigrad.ops.splat import project_gaussians, rasterize_gaussians


def _gaussians(N=12, W=24, H=20, dtype=torch.float64, C=3):
    g = torch.Generator().manual_seed(1)
    means2d = torch.rand(N, 2, generator=g, dtype=dtype) * torch.tensor([W, H], dtype=dtype)
    L = torch.rand(N, 2, 2, generator=g, dtype=dtype) * 3 + torch.eye(2, dtype=dtype) * 1.5
    cov = L @ L.transpose(1, 2) + torch.eye(2, dtype=dtype)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], 1)
    colors = torch.rand(N, C, generator=g, dtype=dtype)
    opac = torch.rand(N, generator=g, dtype=dtype) * 0.8 + 0.15
    depths = torch.rand(N, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (means2d, conics, colors, opac)] + [depths], W, H


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tile", [4, 16])
def test_kernel_matches_reference(dtype, tile):
    (m, q, c, o, d), W, H = _gaussians(N=30, dtype=dtype)
    out = rasterize_gaussians(m, q, c, o, d, W, H, tile)
    ref = rasterize_gaussians_ref(m, q, c, o, d, W, H)
    tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-11, rtol=1e-9)
    torch.testing.assert_close(out.image, ref.image, **tol)
    torch.testing.assert_close(out.alpha, ref.alpha, **tol)
    assert float(out.alpha.detach().max()) > 0.9  # termination / saturation paths are hit
    gi, ga = torch.randn_like(out.image), torch.randn_like(out.alpha)
    g1 = torch.autograd.grad((out.image, out.alpha), (m, q, c, o), (gi, ga))
    g2 = torch.autograd.grad((ref.image, ref.alpha), (m, q, c, o), (gi, ga))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=tol["atol"] * 50, rtol=tol["rtol"] * 10)


def test_gradcheck_fd():
    (m, q, c, o, d), W, H = _gaussians(N=5, W=10, H=9)
    fn = lambda *a: tuple(rasterize_gaussians(*a, d, W, H, 4))  # noqa: E731
    torch.autograd.gradcheck(fn, (m, q, c, o), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_opaque_clamp_and_termination_paths():
    # Many opaque Gaussians on one spot: alpha clamps at 0.99 and pixels terminate early.
    N = 6
    m = torch.full((N, 2), 4.0, dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.01, 0.0, 0.01]], dtype=torch.float64).repeat(N, 1).requires_grad_()
    c = torch.rand(N, 3, dtype=torch.float64, requires_grad=True)
    o = torch.full((N,), 1.0, dtype=torch.float64, requires_grad=True)
    d = torch.arange(N, dtype=torch.float64)
    out = rasterize_gaussians(m, q, c, o, d, 8, 8, 4)
    ref = rasterize_gaussians_ref(m, q, c, o, d, 8, 8)
    torch.testing.assert_close(out.image, ref.image)
    g1 = torch.autograd.grad(out.image.sum() + out.alpha.sum(), (m, q, c, o), retain_graph=True)
    g2 = torch.autograd.grad(ref.image.sum() + ref.alpha.sum(), (m, q, c, o))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    # At the centre pixel alpha clamps to 0.99, so the pixel terminates after 2-3 Gaussians
    # and the rest get no gradient from it; opacity gets none through the clamp.
    gc, go = torch.autograd.grad(out.image[3, 3].sum(), (c, o))
    assert float(gc[3:].abs().sum()) == 0 and float(gc[0].abs().sum()) > 0
    assert float(go.abs().sum()) == 0


def test_projection_matches_point_projection_and_isotropic_size():
    means = torch.tensor([[0.3, -0.2, 0.0]], dtype=torch.float64)
    quats = torch.tensor([[0.9, 0.1, -0.3, 0.2]], dtype=torch.float64)
    s = 0.05
    scales = torch.full((1, 3), s, dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[2, 3] = 4.0
    K = torch.tensor([[100.0, 0, 32], [0, 110.0, 30], [0, 0, 1]], dtype=torch.float64)
    p = project_gaussians(means, quats, scales, w2c, K, 64, 60)
    torch.testing.assert_close(p.means2d[0], torch.tensor([100 * 0.3 / 4 + 32, 110 * -0.2 / 4 + 30], dtype=torch.float64))
    assert bool(p.in_front[0]) and float(p.depths[0]) == 4.0
    # an isotropic Gaussian's screen variance ~ (f s / z)^2 + 0.3 along x (to first order)
    var_x = 1.0 / (p.conics[0, 0] - p.conics[0, 1] ** 2 / p.conics[0, 2])
    assert math.isclose(float(var_x), (100 * s / 4) ** 2 * (1 + (0.3 / 4) ** 2) + 0.3, rel_tol=0.05)


def test_bad_inputs():
    (m, q, c, o, d), W, H = _gaussians(N=4, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"rasterize_gaussians\(\): conics must be positive definite"):
        rasterize_gaussians(m, -q, c, o, d, W, H)
    with pytest.raises(ValueError, match="opacities must lie in"):
        rasterize_gaussians(m, q, c, o + 2, d, W, H)
    with pytest.raises(ValueError, match="width must be an int"):
        rasterize_gaussians(m, q, c, o, d, 0, H)
    with pytest.raises(ValueError, match="means2d contains"):
        rasterize_gaussians(m.detach() * float("nan"), q, c, o, d, W, H)


def test_binning_kernel_matches_sort_path():
    # The CPU fill kernel and the device-agnostic (tile, depth) key sort give the same lists.
    from lumigrad.ops.splat import _bin, _bin_sort, _tile_rects, gaussian_radii

    (m, q, c, o, d), W, H = _gaussians(N=80, W=50, H=37, dtype=torch.float32)
    m = m.detach() * 1.4 - 8  # some Gaussians straddle or leave the image
    feats = torch.cat([m, q.detach(), o.detach()[:, None], gaussian_radii(q, o)[:, None]], 1)
    ids, offsets, tx, ty = _bin(feats, d, W, H, 8)
    ids2, offsets2 = _bin_sort(_tile_rects(feats, tx, ty, 8), d, tx, tx * ty)
    assert ids.numel() > 80 and int((offsets[1:] == offsets[:-1]).sum()) < tx * ty
    torch.testing.assert_close(offsets, offsets2, atol=0, rtol=0)
    torch.testing.assert_close(ids, ids2, atol=0, rtol=0)
