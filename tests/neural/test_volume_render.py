import pytest
import torch

from lumigrad.ops._volume_render_ref import volume_render_ref
from lumigrad.ops.volume_render import packed_info_from_ray_indices, ray_aabb_intersect, volume_render


def _scene(dtype=torch.float64, counts=(3, 0, 5, 1, 7), C=3, scale=1.0):
    counts = torch.tensor(counts)
    S = int(counts.sum())
    ray_ids = torch.repeat_interleave(torch.arange(len(counts)), counts)
    packed = packed_info_from_ray_indices(ray_ids, len(counts))
    sig = (torch.rand(S, dtype=dtype) * 3 * scale).requires_grad_()
    rgb = torch.rand(S, C, dtype=dtype).requires_grad_()
    dt = torch.rand(S, dtype=dtype) * 0.5 + 0.1
    t0 = torch.zeros(S, dtype=dtype)
    for r in range(len(counts)):
        s, c = int(packed[r, 0]), int(packed[r, 1])
        t0[s:s + c] = 1.0 + torch.cumsum(dt[s:s + c], 0) - dt[s:s + c]
    return sig, rgb, t0, t0 + dt, packed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thr", [0.0, 1e-4, 0.3])
def test_kernel_matches_reference_fwd_bwd(dtype, thr):
    sig, rgb, ts, te, packed = _scene(dtype, scale=2.0)
    out = volume_render(sig, rgb, ts, te, packed, thr)
    ref = volume_render_ref(sig, rgb, ts, te, packed, thr)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, **tol)
    gs = [torch.randn_like(t) for t in out]
    ga = torch.autograd.grad(out, (sig, rgb), gs)
    gb = torch.autograd.grad(ref, (sig, rgb), gs)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, **tol)
    assert ga[0].abs().sum() > 0


def test_early_termination_zeroes_later_samples():
    # one opaque sample first: everything behind gets no weight and no gradient
    sig = torch.tensor([10.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    rgb = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    out = volume_render(sig, rgb, ts, ts + 1, torch.tensor([[0, 3]]), 1e-4)
    torch.testing.assert_close(out.colors[0], rgb[0].detach() * (1 - torch.exp(torch.tensor(-10.0, dtype=torch.float64))))
    g_sig, g_rgb = torch.autograd.grad(out.colors.sum(), (sig, rgb))
    assert g_rgb[1:].abs().max() == 0 and g_sig[1:].abs().max() == 0
    out0 = volume_render(sig, rgb, ts, ts + 1, torch.tensor([[0, 3]]), 0.0)
    assert torch.autograd.grad(out0.colors.sum(), sig)[0][1:].abs().max() > 0


@pytest.mark.parametrize("fn", [volume_render, volume_render_ref], ids=["kernel", "ref"])
def test_gradcheck_fd(fn):
    sig, rgb, ts, te, packed = _scene(torch.float64, counts=(2, 4, 0, 3))
    torch.autograd.gradcheck(lambda s, c: tuple(fn(s, c, ts, te, packed, 0.0)), (sig, rgb), eps=1e-6, atol=1e-6)


def test_bad_inputs():
    sig, rgb, ts, te, packed = _scene(torch.float32)
    with pytest.raises(ValueError, match=r"volume_render\(\): packed_info ranges"):
        volume_render(sig, rgb, ts, te, packed + torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match="packed_info must be int32/int64"):
        volume_render(sig, rgb, ts, te, packed.float())
    with pytest.raises(ValueError, match="rgbs must have sigmas' dtype"):
        volume_render(sig, rgb.double(), ts, te, packed)
    with pytest.raises(ValueError, match="sigmas contains 1 NaN"):
        volume_render(torch.where(torch.arange(sig.shape[0]) == 0, float("nan"), sig.detach()), rgb, ts, te, packed)
    with pytest.raises(ValueError, match="t_ends must be >= t_starts"):
        volume_render(sig, rgb, te, ts, packed)
    with pytest.raises(TypeError, match="packed_info must be an int torch.Tensor"):
        volume_render(sig, rgb, ts, te, [[0, 1]])


def test_ray_aabb():
    o = torch.tensor([[0.0, 0.0, -5.0], [0.0, 3.0, -5.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    tn, tf, hit = ray_aabb_intersect(o, d, torch.tensor([-1.0, -1, -1, 1, 1, 1]))
    assert hit.tolist() == [True, False]
    torch.testing.assert_close(torch.stack([tn[0], tf[0]]), torch.tensor([4.0, 6.0]))
