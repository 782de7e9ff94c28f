"""lumigrad.ops.deferred_shade: kernel vs its torch spec and vs central differences (float64), both
thread layouts, and lumigrad.shade.shade's fused path vs its torch path (textures, SH, every light)."""
import importlib

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import lumigrad.shade.deferred as deferred
from lumigrad.ops.deferred_shade import deferred_shade
from lumigrad.ops._deferred_shade_ref import deferred_shade_ref
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, TextureParam
from lumigrad.shade import shade

DT = torch.float64
MATERIALS = {"lambert": 0, "blinn_phong": 1, "ggx": 2}
KINDS = ["directional", "point", "ambient", "point"]


@pytest.fixture(params=[True, False], ids=["cpu-layout", "cuda-layout"])
def layout(request, monkeypatch):
    monkeypatch.setattr(importlib.import_module("lumigrad.ops.deferred_shade"), "_cpu_layout", lambda dev: request.param)


def _inputs(n: int, per_pixel: bool, material: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    nrm = torch.randn(n, 3, generator=g, dtype=DT)
    nrm[:, 2] = nrm[:, 2].abs()
    view = torch.randn(n, 3, generator=g, dtype=DT)
    view[:, 2] = view[:, 2].abs() + 0.5
    pts = 0.3 * torch.randn(n, 3, generator=g, dtype=DT)
    mat = torch.rand(n if per_pixel else 1, 8, generator=g, dtype=DT)
    mat[:, 6] = (5.0 + 20.0 * mat[:, 6]) if material == "blinn_phong" else (0.15 + 0.7 * mat[:, 6])
    mask = torch.rand(n, generator=g, dtype=DT)
    to_light = torch.tensor([0.3, 0.5, 0.8], dtype=DT)
    ldata = torch.tensor([[*(to_light / to_light.norm()).tolist(), 1.0, 0.8, 0.6], [1.0, 2.0, 2.0, 5.0, 4.0, 3.0],
                          [0.0, 0.0, 0.0, 0.1, 0.2, 0.3], [-1.0, 1.5, 1.0, 2.0, 2.0, 2.0]], dtype=DT)
    fo = torch.tensor([[0, 0, 1], [0.5, 0.2, 0.3], [0, 0, 1], [1, 0, 0]], dtype=DT)
    return [nrm, view, pts, mat, ldata, mask], fo


@pytest.mark.parametrize("per_pixel", [False, True], ids=["constant", "per-pixel"])
@pytest.mark.parametrize("material", list(MATERIALS))
def test_kernel_matches_reference(material, per_pixel, layout):
    xs, fo = _inputs(300, per_pixel, material)
    a = [x.clone().requires_grad_(True) for x in xs]
    b = [x.clone().requires_grad_(True) for x in xs]
    out = deferred_shade(material, a[0], a[1], a[2], a[3], KINDS, a[4], fo, a[5])
    ref = deferred_shade_ref(MATERIALS[material], b[0], b[1], b[2], b[3], [0, 1, 2, 1], b[4], fo, b[5])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)
    w = torch.randn_like(out)
    ga = torch.autograd.grad(out, a, w, allow_unused=True)
    gb = torch.autograd.grad(ref, b, w, allow_unused=True)
    for name, x, y, like in zip(("normals", "view_dirs", "points", "mat", "light_data", "mask"), ga, gb, xs):
        x = torch.zeros_like(like) if x is None else x  # None: no dependence (Lambert's view_dirs)
        y = torch.zeros_like(like) if y is None else y
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


LIGHT_LISTS = {  # (indices into _inputs' four lights, names)
    "point-then-directional": [1, 0], "ambient-first": [2, 0, 3], "ambient-only": [2], "no-lights": [],
}


@pytest.mark.parametrize("geometry_only", [True, False], ids=["geometry-only", "all-grads"])
@pytest.mark.parametrize("masked", [True, False], ids=["mask", "no-mask"])
@pytest.mark.parametrize("lights", list(LIGHT_LISTS))
@pytest.mark.parametrize("material", list(MATERIALS))
def test_light_orders_and_gradient_subsets_match_reference(material, lights, masked, geometry_only, layout):
    """Every light kind first, after another, alone or none; and the backward that computes only the normal,
    view direction and position gradients (taken when the material, lights and mask need none)."""
    xs, fo = _inputs(70, material == "ggx", material, seed=3)
    idx = LIGHT_LISTS[lights]
    names = [["directional", "point", "ambient", "point"][i] for i in idx]
    xs[4], fo = xs[4][idx], fo[idx]
    if not masked:
        xs[5] = None
    wants = [True, True, True] + [not geometry_only] * 3
    a = [None if x is None else x.clone().requires_grad_(w) for x, w in zip(xs, wants)]
    b = [None if x is None else x.clone().requires_grad_(w) for x, w in zip(xs, wants)]
    out = deferred_shade(material, a[0], a[1], a[2], a[3], names, a[4], fo, a[5])
    ref = deferred_shade_ref(MATERIALS[material], b[0], b[1], b[2], b[3], idx and [[0, 1, 2, 1][i] for i in idx],
                             b[4], fo, b[5])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)
    w = torch.randn_like(out)
    leaves_a = [x for x in a if x is not None and x.requires_grad]
    leaves_b = [x for x in b if x is not None and x.requires_grad]
    ga = torch.autograd.grad(out, leaves_a, w, allow_unused=True)
    gb = torch.autograd.grad(ref, leaves_b, w, allow_unused=True) if ref.requires_grad else [None] * len(leaves_b)
    for k, (x, y, like) in enumerate(zip(ga, gb, leaves_a)):
        x = torch.zeros_like(like) if x is None else x
        y = torch.zeros_like(like) if y is None else y
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12, msg=lambda m: f"leaf {k}: {m}")


@pytest.mark.parametrize("material", list(MATERIALS))
def test_kernel_gradients_match_central_differences(material, layout):
    xs, fo = _inputs(5, False, material, seed=1)
    xs = [x.requires_grad_(True) for x in xs]

    def f(*a):
        return deferred_shade(material, a[0], a[1], a[2], a[3], KINDS, a[4], fo, a[5])

    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("material", list(MATERIALS))
def test_geometry_only_gradients_match_central_differences(material):
    xs, fo = _inputs(5, False, material, seed=2)
    geo = [x.requires_grad_(True) for x in xs[:3]]

    def f(*g):
        return deferred_shade(material, g[0], g[1], g[2], xs[3], KINDS, xs[4], fo, xs[5])

    assert torch.autograd.gradcheck(f, geo, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_forward_mode_runs_the_reference():
    xs, fo = _inputs(20, True, "ggx")
    tangent = torch.randn_like(xs[0])
    with fwAD.dual_level():
        out = deferred_shade("ggx", fwAD.make_dual(xs[0], tangent), *xs[1:4], KINDS, xs[4], fo, xs[5])
        jvp = fwAD.unpack_dual(out).tangent
    n = xs[0].clone().requires_grad_(True)
    out = deferred_shade("ggx", n, *xs[1:4], KINDS, xs[4], fo, xs[5])
    for k in range(3):  # vjp with unit vectors per channel, summed over pixels, against the jvp's rows
        g, = torch.autograd.grad(out[:, k].sum(), n, retain_graph=True)
        torch.testing.assert_close((g * tangent).sum(-1), jvp[:, k], rtol=1e-10, atol=1e-12)


def test_first_order_only_and_empty():
    xs, fo = _inputs(4, False, "lambert")
    n = xs[0].clone().requires_grad_(True)
    out = deferred_shade("lambert", n, *xs[1:4], KINDS, xs[4], fo, xs[5])
    g, = torch.autograd.grad((out * out).sum(), n, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()
    empty = deferred_shade("lambert", xs[0][:0], xs[1][:0], xs[2][:0], xs[3], KINDS, xs[4], fo, xs[5][:0])
    assert empty.shape == (0, 3)


@pytest.mark.parametrize("bad, match", [
    (dict(material="phong"), "material must be one of"),
    (dict(light_kinds=["spot", "point", "ambient", "point"]), r"light_kinds\[0\]"),
    (dict(mat=torch.zeros(2, 8, dtype=DT)), "mat must be"),
    (dict(points=None), "points are required with point lights"),
    (dict(view_dirs=torch.zeros(6, 3, dtype=torch.float32)), "view_dirs must be float64"),
    (dict(light_data=torch.zeros(3, 6, dtype=DT)), "light_data must be"),
    (dict(mask=torch.zeros(6, 1, dtype=DT)), "mask must be"),
])
def test_bad_inputs_name_the_argument(bad, match):
    xs, fo = _inputs(6, False, "lambert")
    args = dict(material="lambert", normals=xs[0], view_dirs=xs[1], points=xs[2], mat=xs[3], light_kinds=KINDS,
                light_data=xs[4], light_falloff=fo, mask=xs[5])
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        deferred_shade(**args)


def _leaves(*objs):
    out = []
    for o in objs:
        out += [v for v in vars(o).values() if isinstance(v, torch.Tensor) and v.requires_grad]
    return out


@pytest.mark.parametrize("make_material", [
    lambda r: LambertMaterial(r(3)),
    lambda r: LambertMaterial(TextureParam(r(4, 4, 3))),
    lambda r: BlinnPhongMaterial(r(3), r(1), 5.0 + 20.0 * r(1)),
    lambda r: BlinnPhongMaterial(TextureParam(r(4, 4, 3)), r(3), 5.0 + 20.0 * r(1)),
    lambda r: GGXMaterial(r(3), 0.1 + 0.8 * r(1), r(1)),
    lambda r: GGXMaterial(TextureParam(r(4, 4, 3)), 0.1 + 0.8 * r(1), r(1)),
], ids=["lambert", "lambert-texture", "blinn", "blinn-texture", "ggx", "ggx-texture"])
def test_shade_fused_matches_torch_path(make_material, monkeypatch):
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.rand(*shape, generator=g, dtype=DT)

    material = make_material(r)
    for v in _leaves(material):
        v.requires_grad_(True)
    for k, v in vars(material).items():
        if isinstance(v, TextureParam):
            v.texture.requires_grad_(True)
    B, H, W = 2, 4, 5
    pts = (0.6 * r(B, H, W, 3) - 0.3).requires_grad_(True)
    nrm = torch.randn(B, H, W, 3, generator=g, dtype=DT)
    nrm[..., 2] = nrm[..., 2].abs()
    view = torch.randn(B, H, W, 3, generator=g, dtype=DT)
    view[..., 2] = view[..., 2].abs() + 0.5
    nrm.requires_grad_(True)
    view.requires_grad_(True)
    uv, mask = r(B, H, W, 2).requires_grad_(True), r(B, H, W, 1).requires_grad_(True)
    lights = [DirectionalLight((0.2 + r(3)).requires_grad_(True), color=r(3).requires_grad_(True),
                               intensity=r(()).requires_grad_(True)),
              PointLight((1.0 + r(3)).requires_grad_(True), color=r(3).requires_grad_(True), intensity=r(()).requires_grad_(True),
                         falloff=(0.3, 0.2, 0.5)),
              PointLight(1.0 + r(3), intensity=3.0, falloff="none"), AmbientLight(r(3).requires_grad_(True)),
              SHEnvironmentLight(r(9, 3).requires_grad_(True))]
    textures = [v.texture for v in vars(material).values() if isinstance(v, TextureParam)]
    leaves = [pts, nrm, view, uv, mask, *textures, *_leaves(material, *lights)]
    results = []
    for fused in (True, False):
        monkeypatch.setattr(deferred, "FUSED", fused)
        img = shade(material, lights, points=pts, normals=nrm, view_dirs=view, uv=uv, mask=mask)
        w = torch.linspace(-1.0, 1.0, img.numel(), dtype=DT).view_as(img)
        grads = torch.autograd.grad((img * w).sum(), leaves, allow_unused=True)
        results.append((img.detach(), [torch.zeros_like(x) if gr is None else gr for x, gr in zip(leaves, grads)]))
    (img_f, g_f), (img_t, g_t) = results
    torch.testing.assert_close(img_f, img_t, rtol=1e-12, atol=1e-13)
    for i, (a, b) in enumerate(zip(g_f, g_t)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"leaf {i}: {m}")


def test_kernels_compile_no_generated_adjoints():
    from lumigrad.ops._deferred_shade_kernels import KERNELS

    kernels = [k for triple in KERNELS.values() for k in triple]
    assert len(kernels) == 9
    assert all(k.module.options["enable_backward"] is False for k in kernels)


def test_shade_error_names_the_light_by_its_index():
    buf = {k: torch.rand(1, 2, 3, 3, dtype=DT) for k in ("points", "normals", "view_dirs")}
    lights = [SHEnvironmentLight(torch.rand(9, 3, dtype=DT)), DirectionalLight(torch.tensor([0.0, 0.0, 1.0]))]
    with pytest.raises(ValueError, match=r"lights\[1\]\.to_light must be float64"):
        shade(LambertMaterial(torch.rand(3, dtype=DT)), lights, **buf)


@pytest.mark.parametrize("geometry_only", [True, False], ids=["geometry-only", "all-grads"])
def test_chunked_cpu_launches_match_reference(geometry_only, monkeypatch):
    """Several CPU chunks over two threads (forced: real images need 131k pixels a chunk) give the spec's values."""
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")
    monkeypatch.setattr(importlib.import_module("lumigrad.ops.deferred_shade"), "_MIN_CHUNK_PIXELS", 1)
    xs, fo = _inputs(3000, True, "blinn_phong", seed=4)
    wants = [True, True, True] + [not geometry_only] * 3
    a = [x.clone().requires_grad_(w) for x, w in zip(xs, wants)]
    b = [x.clone().requires_grad_(w) for x, w in zip(xs, wants)]
    out = deferred_shade("blinn_phong", a[0], a[1], a[2], a[3], KINDS, a[4], fo, a[5])
    ref = deferred_shade_ref(1, b[0], b[1], b[2], b[3], [0, 1, 2, 1], b[4], fo, b[5])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)
    w = torch.randn_like(out)
    for x, y in zip(torch.autograd.grad(out, [t for t in a if t.requires_grad], w),
                    torch.autograd.grad(ref, [t for t in b if t.requires_grad], w)):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
