"""BRDFs: hand-computed values, reciprocity, GGX normalisation, grazing-angle gradients, bad inputs."""
import math

import pytest
import torch

from lumigrad.shade.brdf import blinn_phong_brdf, ggx_brdf, ggx_ndf, lambert_brdf

D64 = torch.float64


def t(*x):
    return torch.tensor(x, dtype=D64)


N = t(0.0, 0.0, 1.0)
L60 = t(math.sqrt(3) / 2, 0.0, 0.5)  # 60 degrees from the normal


def test_lambert_value():
    f = lambert_brdf(N, L60, N, t(0.9, 0.5, 0.1))
    torch.testing.assert_close(f, t(0.9, 0.5, 0.1) / math.pi)


def test_lambert_broadcasts_to_pixels():
    n = N.expand(2, 3, 4, 3)
    assert lambert_brdf(n, n, n, 0.5).shape == (2, 3, 4, 1)
    assert lambert_brdf(n, n, n, t(0.1, 0.2, 0.3)).shape == (2, 3, 4, 3)


def test_blinn_phong_value():
    # h = (1/2, 0, sqrt(3)/2) so n.h**4 = 9/16; norm (4 + 8) / (8 pi).
    f = blinn_phong_brdf(N, L60, N, t(0.5, 0.5, 0.5), t(0.2, 0.3, 0.4), t(4.0))
    expected = t(0.5, 0.5, 0.5) / math.pi + t(0.2, 0.3, 0.4) * 27.0 / (32.0 * math.pi)
    torch.testing.assert_close(f, expected)


def test_blinn_phong_back_lobe_is_zero():
    f = blinn_phong_brdf(N, t(1.0, 0.0, -1.0), t(0.0, 0.0, -1.0), 0.0, 1.0, t(8.0))
    assert float(f.abs().max()) == 0.0


def test_ggx_value_normal_incidence():
    # l = v = n: D = 1 / (pi alpha^2), Vis = 1/4, F = F0; alpha = 0.25.
    f = ggx_brdf(N, N, N, t(0.8, 0.4, 0.2), t(0.5), t(0.25))
    # diffuse 0.75 * base / pi; F0 = 0.03 + 0.25 * base; spec = F0 / (4 pi 0.0625) = 4 F0 / pi
    expected = t(1.52, 0.82, 0.47) / math.pi
    torch.testing.assert_close(f, expected)


def test_ggx_value_oblique():
    # roughness 1 -> alpha^2 = 1: D = 1/pi, Vis = 0.5 / (n.l + n.v) = 1/3; v.h = cos(30 deg).
    f = ggx_brdf(N, L60, N, t(0.5, 0.5, 0.5), t(1.0), t(0.0))
    fresnel = 0.04 + 0.96 * (1.0 - math.sqrt(3) / 2) ** 5
    expected = 0.5 / math.pi + (1.0 / math.pi) * (1.0 / 3.0) * fresnel
    torch.testing.assert_close(f, torch.full((3,), expected, dtype=D64))


def _random_upper(g, n):
    d = torch.randn(n, 3, generator=g, dtype=D64)
    d[:, 2] = d[:, 2].abs() + 0.05
    return d / d.norm(dim=-1, keepdim=True)


def test_ggx_and_blinn_phong_reciprocity():
    g = torch.Generator().manual_seed(1)
    n, l, v = (_random_upper(g, 64) for _ in range(3))
    c = torch.rand(64, 3, generator=g, dtype=D64)
    r = torch.rand(64, 1, generator=g, dtype=D64)
    m = torch.rand(64, 1, generator=g, dtype=D64)
    torch.testing.assert_close(ggx_brdf(n, l, v, c, r, m), ggx_brdf(n, v, l, c, r, m), rtol=1e-12, atol=1e-12)
    s = 1.0 + 50 * r
    torch.testing.assert_close(
        blinn_phong_brdf(n, l, v, c, c, s), blinn_phong_brdf(n, v, l, c, c, s), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("roughness", [0.2, 0.5, 1.0])
def test_ggx_ndf_projected_integral_is_one(roughness):
    # integral over the hemisphere of D(h) (n.h) dw = pi * integral_0^1 D(mu = sqrt(1 - t)) dt, t = sin^2;
    # a geometric grid in t resolves the peak at t = 0.
    tt = torch.cat([torch.zeros(1, dtype=D64), torch.logspace(-12, 0, 200_001, dtype=D64)])
    d = ggx_ndf(torch.sqrt(1.0 - tt), roughness)
    integral = math.pi * torch.trapezoid(d, tt)
    assert abs(float(integral) - 1.0) < 1e-4


def test_grazing_gradients_finite():
    n = t(0.0, 0.0, 1.0).requires_grad_(True)
    l = t(1.0, 0.0, 0.0).requires_grad_(True)  # n.l = 0
    v = t(0.0, 1.0, 1e-9).requires_grad_(True)  # n.v ~ 0
    r = t(0.02).requires_grad_(True)
    ggx_brdf(n, l, v, t(0.5, 0.5, 0.5), r, t(0.5)).sum().backward()
    s = t(0.5).requires_grad_(True)
    blinn_phong_brdf(n, l, -v.detach(), 0.5, 0.5, s).sum().backward()
    for x in (n, l, v, r, s):
        assert torch.isfinite(x.grad).all()
    z = torch.zeros(3, dtype=D64, requires_grad=True)  # background pixel: zero normal
    ggx_brdf(z, l, v, 0.5, 0.5, 0.5).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_brdf_gradcheck():
    g = torch.Generator().manual_seed(2)
    n, l, v = (_random_upper(g, 4).requires_grad_(True) for _ in range(3))
    c = torch.rand(4, 3, generator=g, dtype=D64, requires_grad=True)
    r = (0.3 + 0.5 * torch.rand(4, 1, generator=g, dtype=D64)).requires_grad_(True)
    m = (0.2 + 0.6 * torch.rand(4, 1, generator=g, dtype=D64)).requires_grad_(True)
    assert torch.autograd.gradcheck(ggx_brdf, (n, l, v, c, r, m))
    s = (2.0 + 10 * torch.rand(4, 1, generator=g, dtype=D64)).requires_grad_(True)
    assert torch.autograd.gradcheck(blinn_phong_brdf, (n, l, v, c, c.detach() * 0.5, s))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"ggx_brdf\(\): to_light must be float32/float64 \[\.\.\., 3\]"):
        ggx_brdf(N, t(1.0, 0.0), N, 0.5, 0.5, 0.0)
    with pytest.raises(TypeError, match="normals"):
        lambert_brdf([0, 0, 1], N, N, 0.5)
    with pytest.raises(ValueError, match="roughness"):
        ggx_brdf(N, N, N, 0.5, torch.tensor(0.5), 0.0)  # float32 vs float64
    with pytest.raises(ValueError, match="broadcast"):
        lambert_brdf(N.expand(2, 3), N.expand(4, 3), N, 0.5)
    with pytest.raises(ValueError, match="n_dot_h"):
        ggx_ndf(torch.tensor([1]), 0.5)
