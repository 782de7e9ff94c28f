"""shade(): gradchecks w.r.t. every light / material / buffer input, masking, texture glue, bad inputs.

Textures go through ``lumigrad.ops.texture.texture``; one test swaps in a
recording ``grid_sample`` stand-in with the same contract to check the glue.
"""
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, TextureParam
from lumigrad.shade.deferred import shade

D64 = torch.float64
gradcheck = torch.autograd.gradcheck


def t(*x):
    return torch.tensor(x, dtype=D64)


def _standin_texture(tex, uv, uv_da=None, filter_mode=None, boundary_mode=None):
    if tex.ndim == 3:
        tex = tex[None]
    tex = tex.expand(uv.shape[0], -1, -1, -1).permute(0, 3, 1, 2)
    grid = torch.stack([2.0 * uv[..., 0] - 1.0, 1.0 - 2.0 * uv[..., 1]], dim=-1)
    out = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)


def _buffers(seed=0, B=1, H=2, W=3):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(B, H, W, 3, generator=g, dtype=D64) * 0.3
    normals = torch.randn(B, H, W, 3, generator=g, dtype=D64) * 0.3
    normals[..., 2] = 1.0
    view = torch.randn(B, H, W, 3, generator=g, dtype=D64) * 0.3
    view[..., 2] = 1.0
    view = view / view.norm(dim=-1, keepdim=True)
    uv = torch.rand(B, H, W, 2, generator=g, dtype=D64) * 0.8 + 0.1
    return dict(points=points, normals=normals, view_dirs=view, uv=uv)


BUF = _buffers()
SUN_DIR = t(0.3, -0.2, 1.0)
LAMP_POS = t(0.5, 0.4, 2.0)


def _lights(**over):
    return [
        DirectionalLight(over.get("to_light", SUN_DIR), t(1.0, 0.9, 0.8), over.get("intensity", t(2.0))),
        PointLight(over.get("position", LAMP_POS), t(0.5, 0.6, 0.7), 3.0),
        AmbientLight(t(0.05, 0.05, 0.1)),
    ]


def _ggx(**over):
    return GGXMaterial(over.get("base_color", t(0.7, 0.5, 0.3)), over.get("roughness", t(0.45)), over.get("metallic", t(0.3)))


def test_output_shape_and_values_are_sane():
    rgb = shade(_ggx(), _lights(), **BUF)
    assert rgb.shape == (1, 2, 3, 3) and rgb.dtype == D64
    assert bool((rgb > 0).all()) and bool(torch.isfinite(rgb).all())


def test_gradcheck_directional_light():
    assert gradcheck(lambda d: shade(_ggx(), _lights(to_light=d), **BUF), (SUN_DIR.clone().requires_grad_(True),))
    assert gradcheck(lambda i: shade(_ggx(), _lights(intensity=i), **BUF), (t(2.0).requires_grad_(True),))


def test_gradcheck_point_light_position():
    assert gradcheck(lambda p: shade(_ggx(), _lights(position=p), **BUF), (LAMP_POS.clone().requires_grad_(True),))


def test_gradcheck_sh_coeffs():
    g = torch.Generator().manual_seed(1)
    coeffs = (torch.randn(16, 3, generator=g, dtype=D64) * 0.2).requires_grad_(True)
    mat = BlinnPhongMaterial(t(0.6, 0.5, 0.4), t(0.3), t(20.0))
    assert gradcheck(lambda c: shade(mat, [SHEnvironmentLight(c)], **BUF), (coeffs,))


def test_gradcheck_material_constants():
    assert gradcheck(lambda c: shade(_ggx(base_color=c), _lights(), **BUF), (t(0.7, 0.5, 0.3).requires_grad_(True),))
    assert gradcheck(lambda r: shade(_ggx(roughness=r), _lights(), **BUF), (t(0.45).requires_grad_(True),))
    assert gradcheck(lambda m: shade(_ggx(metallic=m), _lights(), **BUF), (t(0.3).requires_grad_(True),))
    assert gradcheck(
        lambda a: shade(LambertMaterial(a), _lights(), **BUF), (t(0.2, 0.4, 0.6).requires_grad_(True),)
    )
    assert gradcheck(
        lambda s: shade(BlinnPhongMaterial(0.5, 0.4, s), _lights(), **BUF), (t(12.0).requires_grad_(True),)
    )


def test_gradcheck_geometry_buffers():
    mat, lights = _ggx(), _lights()

    def f(points, normals, view_dirs):
        return shade(mat, lights, points=points, normals=normals, view_dirs=view_dirs)

    args = tuple(BUF[k].clone().requires_grad_(True) for k in ("points", "normals", "view_dirs"))
    assert gradcheck(f, args)


def test_gradcheck_texture_texels():
    g = torch.Generator().manual_seed(2)
    albedo = torch.rand(4, 5, 3, generator=g, dtype=D64).requires_grad_(True)
    rough = (0.3 + 0.4 * torch.rand(4, 5, 1, generator=g, dtype=D64)).requires_grad_(True)

    def f(tex_albedo, tex_rough):
        mat = GGXMaterial(TextureParam(tex_albedo), TextureParam(tex_rough), 0.2)
        return shade(mat, _lights(), **BUF)

    assert gradcheck(f, (albedo, rough))


def test_texture_glue_passes_modes(monkeypatch):
    calls = []

    def recording(tex, uv, uv_da=None, **kw):
        calls.append((tex.shape, uv_da is not None, kw))
        return _standin_texture(tex, uv)

    fake = types.ModuleType("lumigrad.ops.texture")
    fake.texture = recording
    monkeypatch.setitem(sys.modules, "lumigrad.ops.texture", fake)
    uv_da = torch.zeros(1, 2, 3, 4, dtype=D64)
    tex = torch.full((2, 2, 3), 0.5, dtype=D64)
    mat = LambertMaterial(TextureParam(tex, filter_mode="linear", boundary_mode="clamp"))
    out = shade(mat, AmbientLight(t(1.0, 1.0, 1.0)), uv_da=uv_da, **BUF)
    torch.testing.assert_close(out, torch.full((1, 2, 3, 3), 0.5, dtype=D64))
    assert calls == [((2, 2, 3), True, {"filter_mode": "linear", "boundary_mode": "clamp"})]
    shade(LambertMaterial(TextureParam(tex)), AmbientLight(t(1.0, 1.0, 1.0)), **BUF)
    assert calls[-1] == ((2, 2, 3), False, {})


def test_mask_zeroes_background_with_finite_grads():
    buf = {k: v.clone() for k, v in BUF.items()}
    buf["normals"][0, 0, 0] = 0.0  # background pixels typically hold zeros
    buf["view_dirs"][0, 0, 0] = 0.0
    mask = torch.ones(1, 2, 3, 1, dtype=torch.bool)
    mask[0, 0, 0] = False
    c = t(0.7, 0.5, 0.3).requires_grad_(True)
    rgb = shade(_ggx(base_color=c), _lights(), mask=mask, **buf)
    assert float(rgb[0, 0, 0].detach().abs().max()) == 0.0
    assert float(rgb[0, 1, 1].detach().min()) > 0.0
    rgb.sum().backward()
    assert torch.isfinite(c.grad).all()


def test_batched_equals_looped():
    buf = _buffers(seed=3, B=2)
    full = shade(_ggx(), _lights(), **buf)
    for b in range(2):
        one = shade(_ggx(), _lights(), **{k: v[b : b + 1] for k, v in buf.items()})
        torch.testing.assert_close(full[b : b + 1], one)


def test_no_lights_is_black_and_single_light_accepted():
    assert float(shade(_ggx(), [], **BUF).abs().max()) == 0.0
    torch.testing.assert_close(shade(_ggx(), _lights()[0], **BUF), shade(_ggx(), _lights()[:1], **BUF))


def test_float32_works():
    buf = {k: v.float() for k, v in BUF.items()}
    light = DirectionalLight(torch.tensor([0.0, 0.0, 1.0]), intensity=math.pi)
    rgb = shade(GGXMaterial(torch.tensor([0.5, 0.5, 0.5]), 0.5, 0.0), [light], **buf)
    assert rgb.dtype == torch.float32 and bool(torch.isfinite(rgb).all())


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"shade\(\): normals must be \[B, H, W, 3\] with B, H, W = \[1, 2, 3\]"):
        shade(_ggx(), _lights(), **{**BUF, "normals": BUF["normals"][:, :1]})
    with pytest.raises(ValueError, match=r"shade\(\): points must be \[B, H, W, 3\]"):
        shade(_ggx(), _lights(), **{**BUF, "points": BUF["points"][0]})
    with pytest.raises(TypeError, match="view_dirs"):
        shade(_ggx(), _lights(), **{**BUF, "view_dirs": 1.0})
    with pytest.raises(ValueError, match="uv is required because material.albedo is a TextureParam"):
        shade(LambertMaterial(TextureParam(torch.ones(2, 2, 3, dtype=D64))), _lights(), **{**BUF, "uv": None})
    with pytest.raises(ValueError, match=r"lights\[0\].to_light must be float64"):
        shade(_ggx(), [DirectionalLight(torch.tensor([0.0, 0.0, 1.0]))], **BUF)
    with pytest.raises(ValueError, match="material.roughness must be float64"):
        shade(GGXMaterial(0.5, torch.tensor(0.5), 0.0), _lights(), **BUF)
    with pytest.raises(TypeError, match=r"lights\[1\] must be"):
        shade(_ggx(), [_lights()[0], "sun"], **BUF)
    with pytest.raises(TypeError, match="material must be"):
        shade("gold", _lights(), **BUF)
    with pytest.raises(ValueError, match="mask"):
        shade(_ggx(), _lights(), mask=torch.ones(1, 2, 3, 3, dtype=D64), **BUF)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch"])
def test_lambert_needs_only_normals(fused, monkeypatch):
    """Lambert under directional, ambient and SH lights reads neither the points nor the view directions."""
    import lumigrad.shade.deferred as deferred

    monkeypatch.setattr(deferred, "FUSED", fused)
    lights = [DirectionalLight(t(0.3, 0.5, 1.0), color=t(1.0, 0.8, 0.6), intensity=2.0), AmbientLight(t(0.1, 0.2, 0.3)),
              SHEnvironmentLight(torch.rand(9, 3, dtype=D64, generator=torch.Generator().manual_seed(1)))]
    mat = LambertMaterial(t(0.7, 0.5, 0.3))
    full = shade(mat, lights, **BUF, mask=torch.ones(1, 2, 3, 1, dtype=D64))
    n = BUF["normals"].clone().requires_grad_(True)
    only = shade(mat, lights, normals=n, mask=torch.ones(1, 2, 3, 1, dtype=D64))
    torch.testing.assert_close(only, full, rtol=1e-12, atol=1e-14)
    assert gradcheck(lambda x: shade(mat, lights, normals=x), (n,), eps=1e-6, atol=1e-8)


def test_missing_points_or_view_dirs_are_named():
    with pytest.raises(ValueError, match=r"points are required with point lights \(lights\[1\]"):
        shade(LambertMaterial(t(0.5, 0.5, 0.5)), _lights(), normals=BUF["normals"], view_dirs=BUF["view_dirs"])
    with pytest.raises(ValueError, match="view_dirs are required by GGXMaterial"):
        shade(_ggx(), [DirectionalLight(t(0.0, 0.0, 1.0))], normals=BUF["normals"])
    with pytest.raises(ValueError, match=r"normals must be \[B, H, W, 3\]"):
        shade(LambertMaterial(t(0.5, 0.5, 0.5)), [], normals=BUF["normals"][0])


def test_textured_lambert_without_points_matches():
    tex = torch.rand(4, 4, 3, dtype=D64, generator=torch.Generator().manual_seed(2))
    mat = LambertMaterial(TextureParam(tex))
    lights = [DirectionalLight(t(0.3, 0.5, 1.0), intensity=2.0)]
    full = shade(mat, lights, **BUF)
    only = shade(mat, lights, normals=BUF["normals"], uv=BUF["uv"])
    torch.testing.assert_close(only, full, rtol=1e-12, atol=1e-14)
