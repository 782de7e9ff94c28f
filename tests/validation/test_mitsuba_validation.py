"""lumigrad's ray tracer vs Mitsuba 3 (llvm_ad_rgb): images and gradients (slow; needs mitsuba + libLLVM 19).

Run: ``pytest -m slow tests/validation``. Images: relative MSE of lumigrad
(64 spp) against Mitsuba's ``direct`` integrator (256 spp). Gradients: per-pixel
``dI/dtheta`` by forward-mode AD in both (Mitsuba: ``direct_projective``), and
central finite differences of high-spp lumigrad renders; compared on 4x4 pixel
blocks (see ``mitsuba_scenes.compare``): <= 10 % error on the gradient-image norm
and the same sign on >= 90 % of significant blocks.

Soft shadows (area and environment lights) are compared with Mitsuba's
``direct_projective`` with ``sppi = 64`` (its indirect-visibility samples).
Mitsuba's projective integrator finds no indirect silhouettes for point and
directional lights (it warns "No valid indirect silhouette samples"), so for
derivatives carried by hard shadow boundaries lumigrad is checked against finite
differences only. A point light's position is not differentiable in Mitsuba 3,
so light-position gradients are compared with Mitsuba's finite differences.
"""
import numpy as np
import torch
import pytest
from mitsuba_scenes import (
    BOUNCES, SCENES, TraceSettings, build, compare, lumigrad_fd_image, lumigrad_grad_image, mitsuba_fd_image,
    mitsuba_grad_image, mitsuba_integrator,
)

from lumigrad._mitsuba import import_mitsuba, mitsuba_scene
from lumigrad.render.path import render_trace

pytestmark = pytest.mark.slow
RES = 32


@pytest.fixture(scope="module")
def mitsuba():
    """``(mi, dr)``; imported lazily so the default (non-slow) collection never loads Dr.Jit."""
    try:
        return import_mitsuba("llvm_ad_rgb")
    except ImportError as e:
        pytest.skip(f"Mitsuba unavailable: {e}")


# Relative-MSE bounds: Monte Carlo noise of both renders at these spp, measured (docs/tracing.md) and
# doubled; "glossy" also carries the Smith-G difference (Mitsuba uncorrelated, lumigrad height-correlated).
REL_MSE = {"cornell_box": 1e-2, "glossy": 1e-2, "envmap": 4e-3, "envmap_rotated": 4e-3}


def lumigrad_image(name, spp, **kw):
    shapes, cam, lights = build(name, RES)
    st = TraceSettings(spp=spp, boundary="none", max_bounces=BOUNCES.get(name, 1), **kw)
    return render_trace(shapes, cam, lights, st).image[0].numpy()


def mitsuba_image(MI, name, spp):
    shapes, cam, lights = build(name, RES)
    return np.asarray(MI.render(mitsuba_scene(MI, shapes, cam, lights, spp=spp, integrator=mitsuba_integrator(name)),
                                spp=spp, seed=0))


@pytest.mark.parametrize("name", SCENES)
def test_images_agree(mitsuba, name):
    MI, _ = mitsuba
    ref = mitsuba_image(MI, name, 1024 if name in REL_MSE else 256)
    img = lumigrad_image(name, 256 if name in REL_MSE else 64)
    rel_mse = ((img - ref) ** 2).mean() / (ref**2).mean()
    assert rel_mse < REL_MSE.get(name, 2e-3), rel_mse
    assert abs(img.mean() / ref.mean() - 1) < 0.02


@pytest.mark.parametrize("name, param, vs_mitsuba", [
    ("diffuse_sphere", "sphere_dx", True),
    ("diffuse_sphere", "light_dx", True),
    ("shadow_plane", "albedo_d", True),
    ("shadow_plane", "sphere_dx", False),
    ("shadow_plane", "light_dx", False),
    ("envmap", "albedo_d", True),
    ("area_light", "sphere_dx", True),
    ("envmap", "sphere_dx", True),
    ("cornell_box", "albedo_d", True),
    ("glossy", "light_dx", True),
])
def test_gradients_agree(mitsuba, name, param, vs_mitsuba):
    MI, DR = mitsuba
    nb = BOUNCES.get(name, 1)
    penumbra = param == "sphere_dx" and name in ("area_light", "envmap")
    # Penumbra terms carry the noise of their light samples too: more of them (measured over 3 seeds:
    # 1.3-5.2 % from FD and Mitsuba with these; 0.5-11 % with the defaults, 16 and 4 H W).
    samples = dict(shadow_light_samples=64, edge_samples=16 * RES * RES) if penumbra else dict(edge_samples=4 * RES * RES)
    gl = lumigrad_grad_image(name, param, RES, TraceSettings(spp=64, max_bounces=nb, **samples))
    fd = lumigrad_fd_image(name, param, RES, TraceSettings(spp=256, boundary="none", max_bounces=nb), 0.02)
    c = compare(gl, fd)
    assert c["norm_rel_err"] <= 0.10 and c["sign_agree"] >= 0.9, c
    if vs_mitsuba:
        if param == "light_dx":  # not a differentiable parameter in Mitsuba: its finite differences
            gm = mitsuba_fd_image(MI, name, param, RES, 1024, 0.02)
        else:
            # Penumbrae (area and environment lights) are indirect visibility for Mitsuba: sppi > 0.
            sppi = 64 if name in ("area_light", "envmap") else 0
            integ = ({"type": "prb", "max_depth": nb + 1} if param == "albedo_d" else
                     {"type": "direct_projective", "sppc": 64, "sppp": 64, "sppi": sppi})
            gm = mitsuba_grad_image(MI, DR, name, param, RES, 64, integ)
        c = compare(gl, gm)
        assert c["norm_rel_err"] <= 0.10 and c["sign_agree"] >= 0.9, c


def test_xml_import_renders_like_mitsuba(mitsuba):
    """The same XML file rendered by Mitsuba (mi.load_file) and by lumigrad after load_mitsuba_xml."""
    from pathlib import Path

    from lumigrad.scene.mitsuba_xml import load_mitsuba_xml

    MI, _ = mitsuba
    xml = Path(__file__).parents[1] / "data" / "mitsuba_box.xml"
    ref = np.asarray(MI.render(MI.load_file(str(xml), spp=1024), seed=0))
    sc = load_mitsuba_xml(xml, dtype=torch.float64)
    st = TraceSettings(spp=256, max_bounces=sc.settings.max_bounces, boundary="none")
    img = render_trace(sc.shapes, sc.camera, sc.lights, st).image[0].numpy()
    rel_mse = ((img - ref) ** 2).mean() / (ref**2).mean()
    assert rel_mse < 2e-2, rel_mse
    assert abs(img.mean() / ref.mean() - 1) < 0.03


def test_xml_bitmap_textures_render_like_mitsuba(mitsuba, tmp_path):
    """Bitmap textures (sRGB PNG, bilinear and nearest, repeat and clamp) on an OBJ with UVs and on a rectangle,
    loaded by Mitsuba (mi.load_file) and by load_mitsuba_xml: same image, so UV orientation (v up in OBJ files,
    Mitsuba's rectangle UVs), sRGB decoding and the wrap modes agree."""
    import imageio.v3 as iio

    from lumigrad.scene.mitsuba_xml import load_mitsuba_xml

    MI, _ = mitsuba
    y, x = np.mgrid[0:12, 0:16]
    img = np.stack([x * 15, y * 20, (x * y) % 7 * 30], -1).astype(np.uint8)
    img[:4, :5] = 250
    iio.imwrite(tmp_path / "tex.png", img)
    (tmp_path / "q.obj").write_text("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt -0.2 -0.1 \nvt 1.3 -0.1\n"
                                    "vt 1.3 1.2\nvt -0.2 1.2\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    xml = tmp_path / "s.xml"
    xml.write_text("""<scene version="3.0.0">
  <integrator type="direct"/>
  <sensor type="perspective"><float name="fov" value="50"/>
    <transform name="to_world"><lookat origin="0.3, 0.5, 4" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="48"/><integer name="height" value="32"/>
      <rfilter type="box"/></film></sensor>
  <texture type="bitmap" id="t"><string name="filename" value="tex.png"/>
    <string name="wrap_mode" value="clamp"/></texture>
  <emitter type="point"><point name="position" x="0.5" y="1" z="3"/><rgb name="intensity" value="12"/></emitter>
  <shape type="obj"><string name="filename" value="q.obj"/>
    <transform name="to_world"><translate x="-1.1"/></transform>
    <bsdf type="diffuse"><ref name="reflectance" id="t"/></bsdf></shape>
  <shape type="rectangle"><transform name="to_world"><rotate y="1" angle="-20"/><translate x="1.1"/></transform>
    <bsdf type="diffuse"><texture type="bitmap" name="reflectance"><string name="filename" value="tex.png"/>
      <string name="filter_type" value="nearest"/></texture></bsdf></shape>
</scene>""")
    ref = np.asarray(MI.render(MI.load_file(str(xml)), spp=256, seed=0))
    sc = load_mitsuba_xml(xml, dtype=torch.float64)
    img = render_trace(sc.shapes, sc.camera, sc.lights, TraceSettings(spp=64, boundary="none")).image[0].numpy()
    rel_mse = ((img - ref) ** 2).mean() / (ref**2).mean()
    assert rel_mse < 2e-3, rel_mse
    assert abs(img.mean() / ref.mean() - 1) < 0.02
    # Flipping v in lumigrad's UVs breaks the agreement: the test sees the orientation.
    from lumigrad.scene.mesh import Mesh
    from lumigrad.scene.trace_types import Shape

    flipped = [Shape(Mesh(s.mesh.verts, s.mesh.faces, uvs=torch.stack([s.mesh.uvs[:, 0], 1 - s.mesh.uvs[:, 1]], -1),
                          faces_uvs=s.mesh.faces_uvs), s.material) for s in sc.shapes]
    img_f = render_trace(flipped, sc.camera, sc.lights, TraceSettings(spp=64, boundary="none")).image[0].numpy()
    assert ((img_f - ref) ** 2).mean() / (ref**2).mean() > 10 * rel_mse


@pytest.mark.parametrize("filter_mode, bound", [("nearest", 2e-4), ("linear", 3e-3)])
def test_roughness_texture_export_renders_like_mitsuba(mitsuba, filter_mode, bound):
    """A GGX roughness texture exported as a roughconductor ``alpha`` bitmap (alpha = roughness^2 per texel), on a
    mesh whose UV topology differs from its faces (exported split per corner). Nearest filtering is the same
    BRDF in both; bilinear blends roughness in lumigrad and alpha in Mitsuba (measured 9e-4 relative MSE)."""
    from lumigrad.geometry.primitives import plane
    from lumigrad.scene.camera import Camera
    from lumigrad.scene.lights import PointLight
    from lumigrad.scene.materials import GGXMaterial, TextureParam
    from lumigrad.scene.mesh import Mesh
    from lumigrad.scene.trace_types import Shape

    MI, _ = mitsuba
    dt = torch.float64
    v, f = plane(2.0, 2, dtype=dt)
    uv = torch.stack([(v[:, 0] + 1) / 2, (1 - v[:, 2]) / 2], -1)
    mesh = Mesh(v, f, uvs=uv[f.long().reshape(-1)], faces_uvs=torch.arange(f.numel(), dtype=torch.int32).reshape(-1, 3))
    cam = Camera.look_at(torch.tensor([0.0, 1.6, 1.2], dtype=dt), torch.tensor([0.0, 0.0, -0.1], dtype=dt),
                         width=RES, height=RES, fov_y_deg=30.0)
    rough = 0.2 + 0.6 * torch.rand(4, 4, 1, dtype=dt, generator=torch.Generator().manual_seed(0))
    shapes = [Shape(mesh, GGXMaterial(1.0, TextureParam(rough, filter_mode=filter_mode), 1.0))]
    lights = [PointLight(torch.tensor([0.0, 1.5, -0.3], dtype=dt), intensity=4.0)]
    ref = np.asarray(MI.render(mitsuba_scene(MI, shapes, cam, lights, spp=256), spp=256, seed=0))
    img = render_trace(shapes, cam, lights, TraceSettings(spp=64, boundary="none")).image[0].numpy()
    rel_mse = ((img - ref) ** 2).mean() / (ref**2).mean()
    assert rel_mse < bound, rel_mse
