"""Lights and SH: construction checks, eval_light, SH basis / projection / irradiance vs analytic values."""
import math

import numpy as np
import pytest
import torch

from lumigrad.scene.lights import (
    AmbientLight,
    DirectionalLight,
    PointLight,
    SHEnvironmentLight,
    _sphere_quadrature,
    project_sh,
)
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
from lumigrad.shade.deferred import shade
from lumigrad.shade.lighting import eval_light, sh_basis, sh_irradiance

D64 = torch.float64


def t(*x):
    return torch.tensor(x, dtype=D64)


def _unit(g, n):
    d = torch.randn(n, 3, generator=g, dtype=D64)
    return d / d.norm(dim=-1, keepdim=True)


# --- SH -----------------------------------------------------------------------------------------


def test_sh_basis_matches_ramamoorthi_hanrahan_constants():
    d = _unit(torch.Generator().manual_seed(0), 16)
    x, y, z = d.unbind(-1)
    expected = torch.stack(
        [
            0.282095 * torch.ones_like(x),
            0.488603 * y, 0.488603 * z, 0.488603 * x,
            1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        dim=-1,
    )
    torch.testing.assert_close(sh_basis(d, 2), expected, rtol=0, atol=1e-6)


def test_sh_basis_orthonormal_up_to_order_5():
    dirs, w = _sphere_quadrature(16, D64, None)
    y = sh_basis(dirs, 5)
    gram = y.T @ (w[:, None] * y)
    torch.testing.assert_close(gram, torch.eye(36, dtype=D64), rtol=0, atol=1e-10)


def test_constant_environment_projection_and_irradiance():
    env = SHEnvironmentLight.from_function(lambda d: 2.0 * torch.ones_like(d), order=3, dtype=D64)
    expected = torch.zeros(16, 3, dtype=D64)
    expected[0] = 2.0 * math.sqrt(4 * math.pi)
    torch.testing.assert_close(env.coeffs, expected, rtol=0, atol=1e-10)
    n = _unit(torch.Generator().manual_seed(1), 8)
    torch.testing.assert_close(sh_irradiance(env.coeffs, n), torch.full((8, 3), 2.0 * math.pi, dtype=D64))


def test_linear_environment_irradiance_exact():
    # L(w) = a + b.w is band-limited to l <= 1: E(n) = pi a + (2 pi / 3) b.n.
    a, b = 0.7, t(0.1, -0.2, 0.3)
    env = SHEnvironmentLight.from_function(lambda d: (a + d @ b)[:, None].expand(-1, 3), order=2, dtype=D64)
    n = _unit(torch.Generator().manual_seed(2), 8)
    expected = (math.pi * a + 2 * math.pi / 3 * (n @ b))[:, None].expand(-1, 3)
    torch.testing.assert_close(sh_irradiance(env.coeffs, n), expected, rtol=0, atol=1e-10)


def _hemisphere_quadrature(n_axis, res=24):
    """Gauss-Legendre (in cos) x uniform-phi nodes on the hemisphere around ``n_axis``: exact for polynomials."""
    mu, w_mu = np.polynomial.legendre.leggauss(res)
    mu, w_mu = 0.5 * (mu + 1.0), 0.5 * w_mu  # [0, 1]
    phi = (np.arange(2 * res) + 0.5) * math.pi / res
    mg, pg = np.meshgrid(mu, phi, indexing="ij")
    s = np.sqrt(1 - mg**2)
    local = torch.tensor(np.stack([s * np.cos(pg), s * np.sin(pg), mg], -1).reshape(-1, 3), dtype=D64)
    w = torch.tensor(np.repeat(w_mu * math.pi / res, 2 * res), dtype=D64)
    z = n_axis / n_axis.norm()
    tmp = t(1.0, 0.0, 0.0) if abs(float(z[0])) < 0.9 else t(0.0, 1.0, 0.0)
    x = torch.linalg.cross(tmp, z)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    dirs = local @ torch.stack([x, y, z])
    return dirs, w * local[:, 2]  # weights include the cosine


@pytest.mark.parametrize("order", [2, 4])
def test_sh_irradiance_matches_brute_force_for_band_limited_radiance(order):
    # Radiance made only of bands 0, 1, 2 and (order 4) 4: the cosine-lobe
    # convolution is then exact, so E must equal direct quadrature.
    g = torch.Generator().manual_seed(3)
    coeffs = torch.randn((order + 1) ** 2, 3, generator=g, dtype=D64)
    coeffs[9:16] = 0.0  # band 3 has A_3 = 0 and would still show up in the brute force
    for n in _unit(g, 4):
        dirs, w = _hemisphere_quadrature(n)
        brute = (w[:, None] * (sh_basis(dirs, order) @ coeffs)).sum(0)
        torch.testing.assert_close(sh_irradiance(coeffs, n[None])[0], brute, rtol=0, atol=1e-9)


def test_clamped_cosine_projection():
    # L(w) = max(w.z, 0) against its analytic coefficients (c = the Y_lm constants).
    env = SHEnvironmentLight.from_function(
        lambda d: d[:, 2:].clamp_min(0).expand(-1, 3), order=2, resolution=256, dtype=D64
    )
    c0, c1, c20 = 0.5 * math.sqrt(1 / math.pi), 0.5 * math.sqrt(3 / math.pi), 0.25 * math.sqrt(5 / math.pi)
    expected = torch.zeros(9, dtype=D64)
    expected[0] = math.pi * c0  # integral of cos over the hemisphere
    expected[2] = 2 * math.pi / 3 * c1  # integral of cos^2
    expected[6] = c20 * math.pi / 2  # integral of (3 cos^2 - 1) cos
    torch.testing.assert_close(env.coeffs[:, 0], expected, rtol=0, atol=2e-4)
    # Irradiance at the pole from the truncated series, sum_l A_l L_l0 Y_l0(z): pi/4 + pi/3 + 5 pi / 64
    # (the exact value is 2 pi / 3; order 2 overestimates this kinked radiance by ~0.1).
    e = sh_irradiance(env.coeffs, t(0.0, 0.0, 1.0)[None])[0, 0]
    assert abs(float(e) - (math.pi / 4 + math.pi / 3 + 5 * math.pi / 64)) < 1e-3


def test_project_sh_uniform_weights_and_grad():
    g = torch.Generator().manual_seed(4)
    dirs = _unit(g, 20000)
    rad = torch.ones(20000, 1, dtype=D64, requires_grad=True)
    c = project_sh(dirs, rad, order=2)
    assert abs(float(c[0, 0].detach()) - math.sqrt(4 * math.pi)) < 1e-9  # default weights sum to 4 pi
    c.sum().backward()
    assert torch.isfinite(rad.grad).all()


# --- white furnace ------------------------------------------------------------------------------


def test_lambert_white_furnace():
    g = torch.Generator().manual_seed(5)
    normals = _unit(g, 6).reshape(1, 2, 3, 3)
    env = SHEnvironmentLight.from_function(lambda d: torch.ones_like(d), order=2, dtype=D64)
    kw = dict(points=torch.zeros(1, 2, 3, 3, dtype=D64), normals=normals, view_dirs=normals)
    white = LambertMaterial(torch.ones(3, dtype=D64))
    torch.testing.assert_close(shade(white, env, **kw), torch.ones(1, 2, 3, 3, dtype=D64), rtol=0, atol=1e-3)
    torch.testing.assert_close(
        shade(white, AmbientLight(torch.ones(3, dtype=D64)), **kw), torch.ones(1, 2, 3, 3, dtype=D64)
    )
    # A head-on directional light of intensity pi also gives radiance = albedo.
    sun = DirectionalLight(t(0.0, 0.0, 1.0), intensity=math.pi)
    n = torch.zeros(1, 1, 1, 3, dtype=D64)
    n[..., 2] = 1
    out = shade(LambertMaterial(t(0.3, 0.6, 0.9)), [sun], points=n * 0, normals=n, view_dirs=n)
    torch.testing.assert_close(out[0, 0, 0], t(0.3, 0.6, 0.9))


# --- eval_light ---------------------------------------------------------------------------------


def test_eval_light_directional_and_point():
    pts = torch.zeros(2, 2, 3, 3, dtype=D64)
    pts[..., 0] = 1.0
    dirs, rad = eval_light(DirectionalLight(t(0.0, 0.0, 2.0), t(1.0, 0.5, 0.25), t(2.0)), pts)
    assert dirs.shape == rad.shape == (2, 2, 3, 3)
    torch.testing.assert_close(dirs, t(0.0, 0.0, 1.0).expand(2, 2, 3, 3))
    torch.testing.assert_close(rad, t(2.0, 1.0, 0.5).expand(2, 2, 3, 3))
    light = PointLight(t(1.0, 0.0, 2.0), intensity=8.0)
    dirs, rad = eval_light(light, pts)
    torch.testing.assert_close(dirs, t(0.0, 0.0, 1.0).expand(2, 2, 3, 3))
    torch.testing.assert_close(rad, torch.full((2, 2, 3, 3), 2.0, dtype=D64))  # 8 / 2^2
    _, rad = eval_light(PointLight(t(1.0, 0.0, 2.0), intensity=8.0, falloff="none"), pts)
    torch.testing.assert_close(rad, torch.full((2, 2, 3, 3), 8.0, dtype=D64))
    _, rad = eval_light(PointLight(t(1.0, 0.0, 2.0), intensity=8.0, falloff=(1.0, 1.0, 1.0)), pts)
    torch.testing.assert_close(rad, torch.full((2, 2, 3, 3), 8.0 / 7.0, dtype=D64))


def test_eval_light_rejects_ambient_and_dtype_mismatch():
    pts = torch.zeros(1, 1, 1, 3, dtype=D64)
    with pytest.raises(TypeError, match="shade\\(\\) handles them"):
        eval_light(AmbientLight(t(1.0, 1.0, 1.0)), pts)
    with pytest.raises(ValueError, match="light.to_light must be float64"):
        eval_light(DirectionalLight(torch.tensor([0.0, 0.0, 1.0])), pts)


# --- construction checks ------------------------------------------------------------------------


def test_light_and_material_validation():
    with pytest.raises(ValueError, match=r"DirectionalLight\(\): to_light must be \[3\]"):
        DirectionalLight(t(0.0, 1.0))
    with pytest.raises(ValueError, match="to_light must be non-zero"):
        DirectionalLight(t(0.0, 0.0, 0.0))
    with pytest.raises(TypeError, match="color"):
        AmbientLight([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="position contains 1 NaN"):
        PointLight(t(0.0, float("nan"), 1.0))
    with pytest.raises(ValueError, match="falloff"):
        PointLight(t(0.0, 0.0, 1.0), falloff="cubic")
    with pytest.raises(ValueError, match="falloff"):
        PointLight(t(0.0, 0.0, 1.0), falloff=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="intensity"):
        DirectionalLight(t(0.0, 0.0, 1.0), intensity=t(1.0, 2.0))
    with pytest.raises(ValueError, match="intensity"):
        DirectionalLight(t(0.0, 0.0, 1.0), intensity=torch.tensor(1.0))  # float32 vs float64
    with pytest.raises(ValueError, match="order >= 2"):
        SHEnvironmentLight(torch.zeros(4, 3, dtype=D64))
    with pytest.raises(ValueError, match="order >= 2"):
        SHEnvironmentLight(torch.zeros(10, 3, dtype=D64))
    assert SHEnvironmentLight(torch.zeros(16, 3, dtype=D64)).order == 3
    assert SHEnvironmentLight(torch.zeros(16, 3, dtype=D64), order=3).order == 3
    with pytest.raises(ValueError, match="order must match coeffs"):
        SHEnvironmentLight(torch.zeros(16, 3, dtype=D64), order=2)
    with pytest.raises(ValueError, match="order must be an int >= 2"):
        project_sh(t(0.0, 0.0, 1.0)[None], t(1.0)[None], order=1)
    with pytest.raises(ValueError, match=r"GGXMaterial\(\): roughness must be \[\] or \[1\]"):
        GGXMaterial(roughness=t(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="albedo texture must have 1 or 3 channels"):
        LambertMaterial(TextureParam(torch.zeros(4, 4, 2, dtype=D64)))
    with pytest.raises(TypeError, match="albedo"):
        LambertMaterial("red")
    with pytest.raises(ValueError, match="TextureParam"):
        TextureParam(torch.zeros(4, 4, dtype=D64))
