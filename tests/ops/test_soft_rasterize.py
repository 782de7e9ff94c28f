"""Tests for lumigrad.ops.soft_rasterize: kernel vs reference, gradcheck, bad inputs, visibility gradients."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial import ConvexHull

import importlib

from lumigrad.ops import _soft_rasterize_ref
from lumigrad.ops._rasterize_ref import rasterize_ref
from lumigrad.ops.soft_rasterize import SoftRasterized

_soft_module = importlib.import_module("lumigrad.ops.soft_rasterize")  # the package exports a function of that name


def _flat(out: SoftRasterized) -> torch.Tensor:
    """``[B, H, W, C + 1]`` colours then alpha (``[B, H, W, 1]`` without colours), for comparisons."""
    assert isinstance(out, SoftRasterized)
    return out.alpha if out.color is None else torch.cat([out.color, out.alpha], -1)


def soft_rasterize(*args, **kwargs):
    return _flat(_soft_module.soft_rasterize(*args, **kwargs))


def soft_rasterize_ref(*args, **kwargs):
    return _flat(_soft_rasterize_ref.soft_rasterize_ref(*args, **kwargs))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F64 = torch.float64


def _scene(B=2, V=9, F=5, C=3, dtype=F64, seed=0, device="cpu"):
    """Random triangles inside the screen, in perspective (w in [1, 1.6]), z_ndc in (-0.9, 0.9)."""
    g = torch.Generator().manual_seed(seed)
    ndc = torch.rand(B, V, 2, generator=g, dtype=dtype) * 1.6 - 0.8
    z = torch.rand(B, V, 1, generator=g, dtype=dtype) * 1.8 - 0.9
    w = 1.0 + 0.6 * torch.rand(B, V, 1, generator=g, dtype=dtype)
    pos = torch.cat([ndc * w, z * w, w], -1)
    tri = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)]).int()
    col = torch.rand(B, V, C, generator=g, dtype=dtype)
    return pos.to(device), tri.to(device), col.to(device)


def _grads(fn, pos, tri, res, col, bg, cot, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (pos, col, bg)]
    out = fn(leaves[0], tri, res, leaves[1], background=leaves[2], **kw)
    return out, torch.autograd.grad(out, leaves, cot)


# ---------------------------------------------------------------- smoke and shapes

def test_smoke_single_triangle():
    pos = torch.tensor([[-0.6, -0.5, 0.0, 1.0], [0.6, -0.5, 0.0, 1.0], [0.0, 0.6, 0.0, 1.0]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    out = soft_rasterize(pos, tri, (16, 16), torch.ones(3, 2), sigma=1e-3, background=torch.tensor([0.0, 0.5]))
    assert out.shape == (1, 16, 16, 3) and out.dtype == torch.float32
    alpha = out[0, ..., 2]
    assert alpha[9, 8] > 0.99 and alpha[0, 0] == 0  # centre covered, corner far away
    assert torch.allclose(out[0, 9, 8, :2], torch.ones(2), atol=1e-3)  # triangle colour wins
    assert torch.allclose(out[0, 0, 0, :2], torch.tensor([0.0, 0.5]))  # background elsewhere
    assert ((alpha >= 0) & (alpha <= 1)).all()


@pytest.mark.parametrize("pos_b, col_b, expect_b", [(None, None, 1), (2, None, 2), (None, 3, 3), (2, 2, 2)])
def test_shapes(pos_b, col_b, expect_b):
    pos, tri, col = _scene(B=max(pos_b or 1, col_b or 1), dtype=torch.float32)
    pos = pos[0] if pos_b is None else pos
    col = col[0] if col_b is None else col
    assert soft_rasterize(pos, tri, (6, 7)).shape == (pos.shape[0] if pos.ndim == 3 else 1, 6, 7, 1)
    assert soft_rasterize(pos, tri.long(), (6, 7), col, sigma=1e-3).shape == (expect_b, 6, 7, 4)


# ---------------------------------------------------------------- bad inputs

_P, _T = torch.zeros(3, 4), torch.tensor([[0, 1, 2]], dtype=torch.int32)
_NAN = torch.tensor([[0.0, 0, 0, 1], [1, 0, 0, 1], [0, float("nan"), 0, 1]])


@pytest.mark.parametrize(
    "args, kw, err, match",
    [
        (([[0.0, 0, 0, 1]] * 3, _T, (4, 4)), {}, TypeError, "pos must be a torch.Tensor"),
        ((torch.zeros(3, 3), _T, (4, 4)), {}, ValueError, r"pos must be .*got float32 \[3, 3\]"),
        ((torch.zeros(1, 1, 3, 4), _T, (4, 4)), {}, ValueError, "pos must be"),
        ((torch.zeros(3, 4, dtype=torch.int32), _T, (4, 4)), {}, ValueError, "pos must be"),
        ((torch.zeros(0, 4), _T, (4, 4)), {}, ValueError, "empty"),
        ((_NAN, _T, (4, 4)), {}, ValueError, "NaN or inf"),
        ((_P, _T.float(), (4, 4)), {}, ValueError, r"tri must be int32 \[F, 3\], got float32"),
        ((_P, torch.tensor([[0, 1, 3]]), (4, 4)), {}, ValueError, "out of range"),
        ((_P, torch.tensor([[0, -1, 2]]), (4, 4)), {}, ValueError, "negative"),
        ((_P, torch.zeros(0, 3, dtype=torch.int32), (4, 4)), {}, ValueError, "empty"),
        ((_P, torch.tensor([[0, 1, 2, 0]]), (4, 4)), {}, ValueError, "tri must be"),
        ((_P, [[0, 1, 2]], (4, 4)), {}, TypeError, "tri must be"),
        ((_P, _T, (0, 4)), {}, ValueError, "resolution"),
        ((_P, _T, (4, 2.5)), {}, ValueError, "resolution"),
        ((_P, _T, (4,)), {}, ValueError, "resolution"),
        ((_P, _T, (4, 4)), {"sigma": 0.0}, ValueError, "sigma"),
        ((_P, _T, (4, 4)), {"sigma": float("nan")}, ValueError, "sigma"),
        ((_P, _T, (4, 4)), {"sigma": torch.tensor(1.0)}, TypeError, "sigma"),
        ((_P, _T, (4, 4)), {"gamma": -1.0}, ValueError, "gamma"),
        ((_P, _T, (4, 4)), {"dist_cutoff": 0.0}, ValueError, "dist_cutoff"),
        ((_P, _T, (4, 4)), {"z_eps": float("inf")}, ValueError, "z_eps"),
        ((_P, _T, (4, 4), torch.zeros(4, 3)), {}, ValueError, "colors must be"),
        ((_P, _T, (4, 4), torch.zeros(3, 0)), {}, ValueError, "colors must be"),
        ((_P, _T, (4, 4), torch.zeros(3, 3, dtype=F64)), {}, ValueError, "dtype"),
        ((_P, _T, (4, 4), [[0.0] * 3] * 3), {}, TypeError, "colors must be"),
        ((torch.zeros(2, 3, 4), _T, (4, 4), torch.zeros(3, 3, 2)), {}, ValueError, "batch sizes differ"),
        ((_P, _T, (4, 4)), {"background": torch.zeros(3)}, ValueError, "background needs colors"),
        ((_P, _T, (4, 4), torch.zeros(3, 2)), {"background": torch.zeros(3)}, ValueError, "broadcast"),
        ((_P, _T, (4, 4), torch.zeros(3, 2)), {"background": torch.zeros(2, dtype=F64)}, ValueError, "dtype"),
    ],
)
def test_bad_inputs(args, kw, err, match):
    with pytest.raises(err, match=match):
        soft_rasterize(*args, **kw)


# ---------------------------------------------------------------- kernel vs reference

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, gamma", [(F64, 0.05), (F64, 1e-4), (torch.float32, 0.05)])
def test_matches_reference(device, dtype, gamma):
    pos, tri, col = _scene(B=2, V=12, F=9, dtype=dtype, seed=1, device=device)
    pos[1, 0, 3] = -0.5  # a vertex behind the camera: its triangles are culled
    pos[0, 1, 2] = 1.5 * pos[0, 1, 3]  # z_ndc = 1.5 at a vertex: partly beyond the far plane
    tri = torch.cat([tri, torch.tensor([[4, 4, 5]], dtype=torch.int32, device=device)])  # zero-area triangle
    bg = torch.rand(3, dtype=dtype, device=device)
    res = (19, 21)  # not a multiple of the tile size
    kw = dict(sigma=(0.7 * 2 / 21) ** 2, gamma=gamma)
    cot = torch.randn(2, *res, 4, dtype=dtype, device=device)
    out, g = _grads(soft_rasterize, pos, tri, res, col, bg, cot, **kw)
    ref, g_ref = _grads(soft_rasterize_ref, pos, tri, res, col, bg, cot, **kw)
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == F64 else dict(rtol=1e-4, atol=1e-4)
    assert out[..., 3].max() > 0.99 and out[..., 3].min() < 1e-3  # both coverage regimes present
    torch.testing.assert_close(out, ref, **tol)
    for a, b in zip(g, g_ref):
        scale = b.abs().max().item()
        assert scale > 0
        torch.testing.assert_close(a / scale, b / scale, **tol)


def test_matches_reference_alpha_only_and_saturated():
    # sigma tiny: D_j saturates to 1 deep inside (exp overflow regime); gradients must stay finite.
    pos, tri, _ = _scene(B=1, V=6, F=4, seed=2)
    cot = torch.randn(1, 24, 24, 1, dtype=F64)
    res = []
    for fn in (soft_rasterize, soft_rasterize_ref):
        p = pos.clone().requires_grad_()
        out = fn(p, tri, (24, 24), sigma=1e-5)
        res.append((out, torch.autograd.grad(out, p, cot)[0]))
    assert torch.isfinite(res[0][1]).all() and res[0][1].abs().max() > 0
    torch.testing.assert_close(res[0][0], res[1][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-7, atol=1e-9)


def test_needs_input_grad_subsets():
    pos, tri, col = _scene(B=1, seed=3)
    p, c = pos.clone().requires_grad_(), col.clone()
    (gp,) = torch.autograd.grad(soft_rasterize(p, tri, (8, 8), c, sigma=1e-2).sum(), p)
    p2, c2 = pos.clone(), col.clone().requires_grad_()
    (gc,) = torch.autograd.grad(soft_rasterize(p2, tri, (8, 8), c2, sigma=1e-2).sum(), c2)
    assert gp.abs().sum() > 0 and gc.abs().sum() > 0


# ---------------------------------------------------------------- finite differences

@pytest.mark.parametrize("fn", [soft_rasterize, soft_rasterize_ref], ids=["kernel", "ref"])
@pytest.mark.parametrize("with_colors", [True, False])
def test_gradcheck(fn, with_colors):
    pos = torch.tensor(
        [[-0.71, -0.52, 0.10, 1.0], [0.47, -0.61, 0.30, 1.2], [0.13, 0.83, -0.2, 1.4], [0.68, 0.52, 0.6, 1.1]], dtype=F64
    )
    pos[:, :3] *= pos[:, 3:]
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)
    # Blur ~1 pixel at 8x8 so most pixels see a smooth sigmoid; gamma large enough for FD.
    kw = dict(sigma=(2.0 / 8) ** 2, gamma=0.1)
    if with_colors:
        col = torch.rand(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0)).requires_grad_()
        bg = torch.tensor([0.2, 0.7], dtype=F64, requires_grad=True)
        f = lambda p, c, b: fn(p, tri, (8, 8), c, background=b, **kw)  # noqa: E731
        assert torch.autograd.gradcheck(f, (pos.requires_grad_(), col, bg), atol=1e-6, rtol=1e-4)
    else:
        assert torch.autograd.gradcheck(lambda p: fn(p, tri, (8, 8), **kw), (pos.requires_grad_(),), atol=1e-6)


# ---------------------------------------------------------------- batching

def test_batched_equals_looped():
    pos, tri, col = _scene(B=3, V=10, F=7, seed=4)
    pos.requires_grad_()
    col.requires_grad_()
    kw = dict(sigma=1e-3, gamma=0.02)
    out = soft_rasterize(pos, tri, (12, 17), col, **kw)
    cot = torch.randn_like(out)
    g = torch.autograd.grad(out, (pos, col), cot)
    for b in range(3):
        p, c = pos[b].detach().requires_grad_(), col[b].detach().requires_grad_()
        o = soft_rasterize(p, tri, (12, 17), c, **kw)
        gb = torch.autograd.grad(o, (p, c), cot[b:b + 1])
        torch.testing.assert_close(o[0], out[b], rtol=0, atol=1e-12)
        torch.testing.assert_close(gb[0], g[0][b], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gb[1], g[1][b], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- visibility: soft vs hard coverage
#
# d(sum_pixels alpha)/d(vertices) tends to the derivative of the hard covered area
# (in pixels) as sigma -> 0, provided the sigmoid band is wide enough for the
# pixel grid to integrate it. The blur scale is s = sqrt(sigma) NDC = s * W / 2
# pixels; D goes from 0.9 to 0.1 over about 3 s. We use s = 0.7 px: the band
# (~2 px) covers every edge pixel, so the per-pixel sum integrates the edge profile
# even for near-axis-aligned edges (at s <= 0.3 px the sampled derivative aliases
# by 5-40% on small scenes), while the rounding at corners (relative error about
# band / edge length) stays near 1-2% for edges of 40+ px.

def _to_clip(v: torch.Tensor, focal: float = 2.0, dist: float = 3.0, near=0.5, far=10.0) -> torch.Tensor:
    """OpenCV camera-frame points (z forward) in front of a pinhole -> OpenGL clip space."""
    x, y, z = (v + torch.tensor([0.1, -0.05, dist], dtype=v.dtype)).unbind(-1)
    zc = (far + near) / (far - near) * z - 2 * far * near / (far - near)
    return torch.stack([focal * x, -focal * y, zc, z], -1)


def _area_px(pts_ndc: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Area in pixels of the convex hull of ``[N, 2]`` NDC points (differentiable)."""
    px = torch.stack([(pts_ndc[:, 0] + 1) * W / 2, (1 - pts_ndc[:, 1]) * H / 2], -1)
    p = px[torch.as_tensor(ConvexHull(px.detach().numpy()).vertices)]
    q = p.roll(-1, 0)
    return 0.5 * (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum().abs()


def _soft_grad(pos_fn, x, tri, res):
    x = x.clone().requires_grad_()
    alpha = soft_rasterize(pos_fn(x), tri, res, sigma=(0.7 * 2 / res[1]) ** 2)
    return torch.autograd.grad(alpha.sum(), x)[0]


def _rel_err(g, g_true):
    return ((g - g_true).norm() / g_true.norm()).item()


def test_visibility_single_triangle():
    pos = torch.tensor([[-0.61, -0.47, 0.2, 1.3], [0.72, -0.33, 0.1, 1.0], [-0.05, 0.68, -0.3, 1.6]], dtype=F64)
    pos[:, :2] *= pos[:, 3:]
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    res = (64, 64)
    p = pos.clone().requires_grad_()
    (g_true,) = torch.autograd.grad(_area_px(p[:, :2] / p[:, 3:], *res), p)  # exact area, z-gradient 0
    g = _soft_grad(lambda x: x, pos, tri, res)
    assert _rel_err(g, g_true) < 0.05


_OCTA = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=F64)
_OCTA_TRI = torch.tensor(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]], dtype=torch.int32
)


def _octahedron(ax=0.2, ay=0.15, az=0.3) -> torch.Tensor:
    """A flattened, tilted octahedron whose two poles project well inside the silhouette
    (an interior vertex within ~2 px of the silhouette legitimately gets soft gradient)."""
    def r(a, i, j):
        m = torch.eye(3, dtype=F64)
        m[i, i], m[i, j], m[j, i], m[j, j] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
        return m
    rot = r(az, 0, 1) @ r(ay, 2, 0) @ r(ax, 1, 2)
    return _OCTA @ rot.T * torch.tensor([1.0, 0.8, 0.6], dtype=F64)


@pytest.mark.parametrize("angles", [(0.2, 0.15, 0.3), (-0.25, 0.1, 1.1), (0.15, -0.2, 0.7)])
def test_visibility_closed_mesh_perspective(angles):
    # Hard coverage of a convex closed mesh = area of the hull of its projected
    # vertices: exact, with an exact derivative (checked against supersampled
    # rasterize_ref coverage below, and by FD of supersampled coverage in the next test).
    verts, res = _octahedron(*angles), (128, 128)
    v = verts.clone().requires_grad_()
    c = _to_clip(v)
    area = _area_px(c[:, :2] / c[:, 3:], *res)
    (g_true,) = torch.autograd.grad(area, v)
    rast, _ = rasterize_ref(_to_clip(verts), _OCTA_TRI, (256, 256))
    assert abs((rast[..., 3] > 0).sum().item() / 4 - area.item()) < 0.01 * area.item()
    assert g_true[4:].abs().max() == 0  # the poles are interior
    g = _soft_grad(_to_clip, verts, _OCTA_TRI, res)
    assert _rel_err(g, g_true) < 0.05


def test_visibility_closed_mesh_fd_supersampled():
    # Central FD of rasterize_ref coverage at 4x4 supersampling w.r.t. every vertex
    # coordinate (agrees with the hull-area gradient to ~0.5%; soft is within ~2%).
    verts, res, ss = _octahedron(), (128, 128), 4
    h = 1.0 / res[1] * 2 / 2.0 * 3.0  # about one pixel of image motion at the mesh's depth
    n = verts.numel()
    step = torch.eye(n, dtype=F64).reshape(n, *verts.shape) * h
    cov = []
    for sgn in (1, -1):
        for i in range(n):
            rast, _ = rasterize_ref(_to_clip(verts + sgn * step[i]).float(), _OCTA_TRI, (res[0] * ss, res[1] * ss))
            cov.append((rast[..., 3] > 0).sum().item() / ss**2)
    cov = torch.tensor(cov, dtype=F64)
    g_fd = ((cov[:n] - cov[n:]) / (2 * h)).reshape(verts.shape)
    g = _soft_grad(_to_clip, verts, _OCTA_TRI, res)
    assert _rel_err(g, g_fd) < 0.05


def test_huge_resolution_is_refused_up_front():
    # issue 13: 100000^2 used to run for tens of seconds before failing to allocate.
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"soft_rasterize\(\): B\*H\*W"):
        soft_rasterize(_P, _T, (100000, 100000), torch.zeros(3, 2))
    assert time.perf_counter() - t0 < 5.0


def test_returns_named_tuple():
    pos, tri, col = _scene(B=2, seed=5)
    out = _soft_module.soft_rasterize(pos, tri, (6, 7), col, sigma=1e-3, gamma=0.1)
    assert isinstance(out, SoftRasterized) and out._fields == ("color", "alpha")
    assert out.color.shape == (2, 6, 7, 3) and out.alpha.shape == (2, 6, 7, 1)
    color, alpha = _soft_module.soft_rasterize(pos, tri, (6, 7), sigma=1e-3)
    assert color is None and torch.equal(alpha, out.alpha)
