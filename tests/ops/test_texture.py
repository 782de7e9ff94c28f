"""Tests for lumigrad.ops.texture: conventions, modes, mip chain, kernel vs reference, gradcheck."""
import pytest
import torch

from lumigrad.ops._texture_ref import texture_ref
from lumigrad.ops.texture import BOUNDARY_MODES, build_mip, texture

DTYPES = [torch.float32, torch.float64]
FILTERS = ["nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear"]


def _inputs(dtype, B=2, Ht=7, Wt=10, C=3, H=5, W=6, seed=0, tex_batch=None):
    g = torch.Generator().manual_seed(seed)
    tex = torch.rand(B if tex_batch is None else tex_batch, Ht, Wt, C, dtype=dtype, generator=g)
    uv = torch.rand(B, H, W, 2, dtype=dtype, generator=g) * 1.6 - 0.3  # also outside [0, 1]
    uv_da = torch.randn(B, H, W, 4, dtype=dtype, generator=g) * 0.3  # levels from 0 to max
    return tex, uv, uv_da


def _grad(fn, tex, uv, uv_da, cot, **kw):
    t, u, d = (x.clone().requires_grad_() for x in (tex, uv, uv_da))
    out = fn(t, u, d, **kw)
    grads = torch.autograd.grad((out * cot).sum(), [t, u, d], allow_unused=True)
    return out, [torch.zeros_like(x) if gx is None else gx for gx, x in zip(grads, (t, u, d))]


def test_smoke_value():
    tex = torch.tensor([[[1.0], [2.0]]])  # 1 x 2 texels
    out = texture(tex, torch.tensor([[[[0.5, 0.5]]]]), boundary_mode="clamp")
    torch.testing.assert_close(out.flatten(), torch.tensor([1.5]))


@pytest.mark.parametrize("filter_mode", ["nearest", "linear"])
def test_texel_centres_convention(filter_mode):
    """Texel (row r, col c) has its centre at u = (c + .5) / Wt, v = 1 - (r + .5) / Ht; row 0 is the top."""
    Ht, Wt = 3, 5
    tex = torch.arange(Ht * Wt, dtype=torch.float32).reshape(Ht, Wt, 1)
    r, c = torch.meshgrid(torch.arange(Ht), torch.arange(Wt), indexing="ij")
    uv = torch.stack([(c + 0.5) / Wt, 1 - (r + 0.5) / Ht], -1)[None].float()
    out = texture(tex, uv, filter_mode=filter_mode)
    torch.testing.assert_close(out[0], tex)
    # v = 0.99 (near the top edge) reads row 0, v = 0.01 reads the last row.
    edge = texture(tex, torch.tensor([[[[0.1, 0.99], [0.1, 0.01]]]]), filter_mode="nearest")
    torch.testing.assert_close(edge.flatten(), torch.tensor([0.0, 10.0]))


def test_wrap_clamp_zero():
    tex = torch.rand(4, 8, 2)
    uv = torch.rand(1, 3, 3, 2) * 0.8 + 0.1
    shifted = uv + torch.tensor([1.0, -2.0])
    torch.testing.assert_close(texture(tex, shifted, boundary_mode="wrap"), texture(tex, uv), atol=1e-5, rtol=0)
    # Beyond the right edge: clamp repeats the last column, zero reads 0.
    far = torch.tensor([[[[1.5, 1 - 1.5 / 4]]]])
    torch.testing.assert_close(texture(tex, far, boundary_mode="clamp")[0, 0, 0], tex[1, 7])
    torch.testing.assert_close(texture(tex, far, boundary_mode="zero")[0, 0, 0], torch.zeros(2))
    torch.testing.assert_close(texture(tex, far, boundary_mode="wrap")[0, 0, 0], 0.5 * (tex[1, 3] + tex[1, 4]))
    # Half a texel past the left edge: wrap blends with the last column, zero halves the edge texel.
    edge = torch.tensor([[[[0.0, 1 - 0.5 / 4]]]])
    torch.testing.assert_close(texture(tex, edge, boundary_mode="wrap")[0, 0, 0], 0.5 * (tex[0, 0] + tex[0, 7]))
    torch.testing.assert_close(texture(tex, edge, boundary_mode="zero")[0, 0, 0], 0.5 * tex[0, 0])
    torch.testing.assert_close(texture(tex, edge, boundary_mode="clamp")[0, 0, 0], tex[0, 0])


def test_huge_uv_is_safe():
    tex = torch.rand(4, 4, 1)
    uv = torch.tensor([[[[1e9, -1e9], [-3e7, 5e8]]]])
    for mode in BOUNDARY_MODES:
        out = texture(tex, uv, boundary_mode=mode)
        assert torch.isfinite(out).all() and out.shape == (1, 1, 2, 1)


def test_build_mip_shapes_and_values():
    tex = torch.rand(2, 8, 4, 3)
    mip = build_mip(tex)
    assert mip[0] is tex
    assert [tuple(m.shape[1:3]) for m in mip] == [(8, 4), (4, 2), (2, 1), (1, 1)]
    torch.testing.assert_close(mip[1][:, 1, 0], tex[:, 2:4, 0:2].mean((1, 2)))
    pooled = torch.nn.functional.adaptive_avg_pool2d(tex.permute(0, 3, 1, 2), (4, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(mip[1], pooled)  # the even-size fast path is the same box filter
    torch.testing.assert_close(mip[-1][:, 0, 0], tex.mean((1, 2)))
    odd = build_mip(torch.rand(5, 3, 1))  # unbatched, odd sizes
    assert [tuple(m.shape) for m in odd] == [(5, 3, 1), (2, 1, 1), (1, 1, 1)]
    assert len(build_mip(tex, max_mip_level=1)) == 2 and len(build_mip(tex, max_mip_level=0)) == 1


def test_constant_texture_all_levels():
    tex = torch.full((16, 16, 3), 0.3)
    assert all(torch.allclose(m, torch.full_like(m, 0.3)) for m in build_mip(tex))
    uv = torch.rand(1, 8, 8, 2)
    uv_da = torch.randn(1, 8, 8, 4) * torch.logspace(-3, 1, 8)[:, None, None]  # all levels
    for f in ("linear-mipmap-nearest", "linear-mipmap-linear"):
        out = texture(tex, uv, uv_da, filter_mode=f)
        torch.testing.assert_close(out, torch.full_like(out, 0.3))


def test_checkerboard_minified_is_grey():
    r, c = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    tex = ((r + c) % 2).float()[..., None].expand(64, 64, 3)
    # Texel centres (u = (c + 0.5) / 64, v = 1 - (r + 0.5) / 64): exactly 0 or 1 at level 0.
    idx = torch.arange(4, dtype=torch.float32) * 7 + 3
    uu, vv = torch.meshgrid((idx + 0.5) / 64, 1 - (idx + 0.5) / 64, indexing="xy")
    uv = torch.stack([uu, vv], dim=-1)[None]
    big = torch.full((1, 4, 4, 4), 0.0)
    big[..., 0] = big[..., 3] = 1.0  # one pixel spans the whole texture
    out = texture(tex, uv, big)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))
    sharp = texture(tex, uv, big * 1e-3)  # magnified: level 0, values far from grey somewhere
    assert (sharp - 0.5).abs().max() > 0.2
    torch.testing.assert_close(sharp, texture(tex, uv))
    # max_mip_level caps minification: level 0 only is plain bilinear.
    torch.testing.assert_close(texture(tex, uv, big, max_mip_level=0), texture(tex, uv))


def test_mip_level_interpolates_between_levels():
    tex = torch.zeros(8, 8, 1)
    tex[:4] = 1.0  # top half white: levels 1 and 2 blur the split differently at this uv
    uv = torch.tensor([[[[0.5, 0.5 + 0.5 / 8]]]])  # centre of row 3 (1.0 at level 0, 0.75 / 0.625 at 1 / 2)
    da = torch.tensor([[[[2 ** 1.5 / 8, 0.0, 0.0, 2 ** 1.5 / 8]]]])  # level 1.5
    lo = texture(tex, uv, da * 2 ** -1.5, filter_mode="linear-mipmap-linear")  # level 0
    lvl = build_mip(tex)
    want = 0.5 * texture(lvl[1], uv) + 0.5 * texture(lvl[2], uv)
    torch.testing.assert_close(texture(tex, uv, da), want)
    torch.testing.assert_close(lo, texture(tex, uv))


def _bad_cases():
    tex, uv, uv_da = torch.rand(4, 4, 3), torch.rand(1, 2, 2, 2), torch.rand(1, 2, 2, 4)
    return [
        (dict(tex=torch.rand(4, 3)), ValueError, "tex must be"),
        (dict(tex=torch.rand(1, 1, 4, 4, 3)), ValueError, "tex must be"),
        (dict(tex=[[0.0]]), TypeError, "tex must be a torch.Tensor"),
        (dict(tex=torch.zeros(4, 4, 3, dtype=torch.int64)), ValueError, "tex must be"),
        (dict(tex=torch.rand(3, 4, 4, 3)), ValueError, "tex batch"),
        (dict(tex=torch.full((4, 4, 3), float("nan"))), ValueError, "tex contains"),
        (dict(uv=torch.rand(1, 2, 2, 3)), ValueError, "uv must be"),
        (dict(uv=torch.rand(2, 2, 2)), ValueError, "uv must be"),
        (dict(uv=torch.full((1, 2, 2, 2), float("inf"))), ValueError, "uv contains"),
        (dict(uv=torch.rand(1, 2, 2, 2, dtype=torch.float64)), ValueError, "dtype"),
        (dict(filter_mode="cubic"), ValueError, "linear-mipmap-linear"),
        (dict(boundary_mode="mirror"), ValueError, "wrap, clamp, zero"),
        (dict(filter_mode="linear-mipmap-linear"), ValueError, "needs uv_da"),
        (dict(uv_da=torch.rand(1, 2, 3, 4)), ValueError, "uv_da must be"),
        (dict(uv_da=torch.rand(1, 2, 2, 2)), ValueError, "uv_da must be"),
        (dict(uv_da=torch.full((1, 2, 2, 4), float("nan"))), ValueError, "uv_da contains"),
        (dict(uv_da=uv_da, max_mip_level=-1), ValueError, "max_mip_level"),
        (dict(uv_da=uv_da, max_mip_level=1.5), ValueError, "max_mip_level"),
        (dict(uv_da=uv_da, mip=[torch.rand(2, 2, 3)]), ValueError, r"mip\[0\]"),
        (dict(uv_da=uv_da, mip=[tex, torch.rand(2, 2, 4)]), ValueError, r"mip\[1\]"),
        (dict(uv_da=uv_da, mip=tex), TypeError, "mip must be"),
    ], dict(tex=tex, uv=uv)


@pytest.mark.parametrize("case", range(len(_bad_cases()[0])))
def test_bad_inputs(case):
    cases, base = _bad_cases()
    override, err, match = cases[case]
    kwargs = {**base, **override}
    with pytest.raises(err, match=match):
        texture(kwargs.pop("tex"), kwargs.pop("uv"), kwargs.pop("uv_da", None), **kwargs)


def test_build_mip_bad_inputs():
    with pytest.raises(ValueError, match="tex must be"):
        build_mip(torch.rand(4, 4))
    with pytest.raises(ValueError, match="max_mip_level"):
        build_mip(torch.rand(4, 4, 1), max_mip_level=-2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", BOUNDARY_MODES)
@pytest.mark.parametrize("filter_mode", FILTERS)
def test_kernel_matches_reference(filter_mode, boundary, dtype):
    tex, uv, uv_da = _inputs(dtype, tex_batch=1 if boundary == "clamp" else None)
    cot = torch.randn(2, 5, 6, 3, dtype=dtype, generator=torch.Generator().manual_seed(9))
    kw = dict(filter_mode=filter_mode, boundary_mode=boundary)
    out_k, g_k = _grad(texture, tex, uv, uv_da, cot, **kw)
    out_r, g_r = _grad(texture_ref, tex, uv, uv_da, cot, **kw)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out_k, out_r, **tol)
    for a, b in zip(g_k, g_r):
        torch.testing.assert_close(a, b, **tol)
    assert g_k[0].abs().sum() > 0
    if filter_mode != "nearest":
        assert g_k[1].abs().sum() > 0
    if filter_mode == "linear-mipmap-linear":
        assert g_k[2].abs().sum() > 0


@pytest.mark.parametrize("fn", [texture, texture_ref], ids=["kernel", "ref"])
@pytest.mark.parametrize(
    "filter_mode,boundary",
    [("linear", "wrap"), ("linear", "zero"), ("linear-mipmap-linear", "clamp"), ("linear-mipmap-nearest", "wrap")],
)
def test_gradcheck(fn, filter_mode, boundary):
    tex, uv, uv_da = _inputs(torch.float64, B=1, Ht=4, Wt=6, C=2, H=2, W=3, seed=2)
    inputs = tuple(x.requires_grad_() for x in (tex, uv, uv_da))
    kw = dict(filter_mode=filter_mode, boundary_mode=boundary)
    assert torch.autograd.gradcheck(lambda t, u, d: fn(t, u, d, **kw), inputs, eps=1e-6, atol=1e-6)
    # nearest: only tex receives a gradient.
    assert torch.autograd.gradcheck(lambda t: fn(t, uv.detach(), filter_mode="nearest"), inputs[:1])


def test_cached_mip_matches_and_backprops():
    tex, uv, uv_da = _inputs(torch.float64, Ht=16, Wt=8, seed=4)
    tex.requires_grad_()
    mip = build_mip(tex)
    out_a = texture(tex, uv, uv_da, mip=mip)
    out_b = texture(tex, uv, uv_da)
    torch.testing.assert_close(out_a, out_b)
    (ga,) = torch.autograd.grad(out_a.sum(), [tex])
    (gb,) = torch.autograd.grad(out_b.sum(), [tex])
    torch.testing.assert_close(ga, gb)
    frozen = [m.detach() for m in mip]  # a cached chain of a fixed texture: level 0 still gets gradients
    (gc,) = torch.autograd.grad(texture(tex, uv, uv_da, mip=frozen).sum(), [tex])
    assert 0 < gc.abs().sum() < gb.abs().sum()
    torch.testing.assert_close(texture(tex, uv, uv_da, mip=mip, max_mip_level=1), texture(tex, uv, uv_da, max_mip_level=1))


def test_batched_equals_looped():
    tex, uv, uv_da = _inputs(torch.float32, B=3)
    out = texture(tex, uv, uv_da, boundary_mode="clamp")
    for b in range(3):
        ob = texture(tex[b], uv[b : b + 1], uv_da[b : b + 1], boundary_mode="clamp")
        torch.testing.assert_close(out[b : b + 1], ob)
    shared = texture(tex[0], uv, uv_da)
    torch.testing.assert_close(shared, texture(tex[:1].expand(3, -1, -1, -1), uv, uv_da))


@pytest.mark.parametrize("fn", [texture, texture_ref], ids=["kernel", "reference"])
@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e30), (torch.float32, 2e38), (torch.float64, 1e300)])
def test_huge_uv_da_selects_coarsest_level(fn, dtype, scale):
    # issue 13: the footprint (quadratic in uv_da) overflowed and gave level 0 (0.49 off); a
    # huge footprint is the 1x1 level, i.e. the texture's mean, and its level gradient is 0.
    g = torch.Generator().manual_seed(4)
    tex = torch.rand(16, 8, 3, generator=g, dtype=dtype)
    uv = torch.rand(1, 3, 4, 2, generator=g, dtype=dtype)
    da = (torch.rand(1, 3, 4, 4, generator=g, dtype=dtype) + 0.5) * scale
    da.requires_grad_(True)
    out = fn(tex, uv, da, filter_mode="linear-mipmap-linear")
    torch.testing.assert_close(out, tex.mean((0, 1)).expand_as(out), atol=1e-6, rtol=1e-6)
    (g_da,) = torch.autograd.grad(out.sum(), da)
    assert torch.equal(g_da, torch.zeros_like(g_da))
    # Tiny derivatives are level 0 (plain bilinear), not NaN.
    tiny = fn(tex, uv, da.detach() / scale * 1e-30, filter_mode="linear-mipmap-linear")
    torch.testing.assert_close(tiny, fn(tex, uv, filter_mode="linear"))


@pytest.mark.parametrize("filter_mode", ["linear", "linear-mipmap-linear"])
def test_forward_mode_jvp_matches_reverse_mode(filter_mode):
    """Forward-mode AD (through the reference) gives the same directional derivative as the kernel's vjp."""
    import torch.autograd.forward_ad as fwAD

    tex, uv, uv_da = _inputs(torch.float64, B=1, Ht=4, Wt=6, C=2, H=3, W=3, seed=4)
    g = torch.Generator().manual_seed(5)
    dt, du, dd = (torch.randn(x.shape, dtype=x.dtype, generator=g) for x in (tex, uv, uv_da))
    kw = dict(filter_mode=filter_mode, boundary_mode="wrap")
    with fwAD.dual_level():
        out = texture(fwAD.make_dual(tex, dt), fwAD.make_dual(uv, du), fwAD.make_dual(uv_da, dd), **kw)
        value, jvp = fwAD.unpack_dual(out)
    cot = torch.randn(value.shape, dtype=value.dtype, generator=g)
    out_k, grads = _grad(texture, tex, uv, uv_da, cot, **kw)
    torch.testing.assert_close(value, out_k, rtol=1e-12, atol=1e-12)
    vjp_dot = sum((gx * d).sum() for gx, d in zip(grads, (dt, du, dd)))
    torch.testing.assert_close((jvp * cot).sum(), vjp_dot, rtol=1e-10, atol=1e-10)
    assert float(jvp.abs().sum()) > 0
