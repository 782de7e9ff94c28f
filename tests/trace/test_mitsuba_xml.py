"""Mitsuba 3 XML import (lumigrad.scene.mitsuba_xml); the image comparison with Mitsuba itself is in tests/validation."""
from pathlib import Path

import pytest
import torch

from lumigrad.render.path import TraceSettings, render_trace
from lumigrad.scene.materials import GGXMaterial, LambertMaterial
from lumigrad.scene.mitsuba_xml import load_mitsuba_xml

XML = Path(__file__).parents[1] / "data" / "mitsuba_box.xml"


def test_import_maps_scene_elements():
    sc = load_mitsuba_xml(XML, dtype=torch.float64)
    assert sc.settings.spp == 16 and sc.settings.max_bounces == 2  # $spp default; max_depth 3
    assert (sc.camera.width, sc.camera.height) == (24, 20)
    # The look-at target projects to the image centre; +y (up) is towards row 0.
    w2c, k = sc.camera.world_to_cam[0], sc.camera.K[0]
    c = w2c[:3, :3] @ torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64) + w2c[:3, 3]
    torch.testing.assert_close((k @ (c / c[2]))[:2], torch.tensor([12.0, 10.0], dtype=torch.float64))
    up = w2c[:3, :3] @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert float(up[1]) < 0
    # fov_axis y: fy = H / (2 tan(20 deg)).
    torch.testing.assert_close(float(k[1, 1]), 10 / torch.tan(torch.deg2rad(torch.tensor(20.0))).item())
    floor, back, left, sphere, lamp = sc.shapes
    # The floor rectangle, rotated -90 deg about x, faces +y at y = -1.
    v, f = floor.mesh.verts, floor.mesh.faces.long()
    n = torch.linalg.cross(v[f[0, 1]] - v[f[0, 0]], v[f[0, 2]] - v[f[0, 0]])
    assert float(n[1]) > 0 and torch.allclose(v[:, 1], torch.full_like(v[:, 1], -1.0))
    assert float(lamp.emission[0]) == 15.0 and lamp.mesh.verts[:, 1].allclose(torch.full((4,), 0.99, dtype=torch.float64))
    ln = torch.linalg.cross(lamp.mesh.verts[1] - lamp.mesh.verts[0], lamp.mesh.verts[2] - lamp.mesh.verts[0])
    assert float(ln[1]) < 0  # the light faces down
    assert isinstance(left.material, LambertMaterial) and float(left.material.albedo[0]) == pytest.approx(0.6)
    assert isinstance(sphere.material, GGXMaterial) and float(sphere.material.roughness) == pytest.approx(0.2**0.5)
    assert float(sphere.mesh.verts[:, 1].min()) == pytest.approx(-1.0, abs=1e-6)
    img = render_trace(sc.shapes, sc.camera, sc.lights, TraceSettings(spp=1, max_bounces=2, boundary="none")).image
    assert img.shape == (1, 20, 24, 3) and float(img.mean()) > 0


def test_import_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mitsuba_xml(tmp_path / "none.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<scene><shape type='cylinder'/></scene>")
    with pytest.raises(ValueError, match="cylinder"):
        load_mitsuba_xml(bad)
    bad.write_text("<scene><sensor type='perspective'/><shape type='sphere'><bsdf type='dielectric'/></shape></scene>")
    with pytest.raises(ValueError, match="dielectric"):
        load_mitsuba_xml(bad)
    bad.write_text("<scene>")
    with pytest.raises(ValueError, match="not valid XML"):
        load_mitsuba_xml(bad)


def test_trace_render_cli_reads_mitsuba_xml(tmp_path):
    import json

    from lumigrad.cli.main import main

    rc = main(["trace", "render", str(XML), "--spp", "2", "--out", str(tmp_path / "out")])
    assert rc == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics


def _textured_xml(tmp_path, shape: str, bsdf: str = "", extra: str = "") -> Path:
    """A scene with one textured shape facing the camera (from +z) under a constant environment; the image
    ``tex.png`` has its top half red and its bottom half blue."""
    import imageio.v3 as iio
    import numpy as np

    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :, 0] = 255
    img[2:, :, 2] = 128
    iio.imwrite(tmp_path / "tex.png", img)
    (tmp_path / "q.obj").write_text("v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                                    "f 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    bsdf = bsdf or ('<bsdf type="diffuse"><texture type="bitmap" name="reflectance">'
                    '<string name="filename" value="tex.png"/><string name="filter_type" value="nearest"/></texture></bsdf>')
    xml = tmp_path / "s.xml"
    xml.write_text(f"""<scene version="3.0.0">{extra}
  <sensor type="perspective"><float name="fov" value="60"/>
    <transform name="to_world"><lookat origin="0, 0, 3" target="0, 0, 0" up="0, 1, 0"/></transform>
    <film type="hdrfilm"><integer name="width" value="16"/><integer name="height" value="16"/></film></sensor>
  <emitter type="constant"/>
  <shape type="{shape}">{'<string name="filename" value="q.obj"/>' if shape == 'obj' else ''}{bsdf}</shape>
</scene>""")
    return xml


def test_bitmap_texture_import_values_and_modes(tmp_path):
    from lumigrad.scene.materials import TextureParam
    from lumigrad.scene.mitsuba_xml import srgb_to_linear

    sc = load_mitsuba_xml(_textured_xml(tmp_path, "rectangle"), dtype=torch.float64)
    tp = sc.shapes[0].material.albedo
    assert isinstance(tp, TextureParam) and tp.filter_mode == "nearest" and tp.boundary_mode == "wrap"
    # 8-bit images are sRGB: decoded to linear like Mitsuba's (raw = false) bitmap.
    torch.testing.assert_close(tp.texture[0, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(tp.texture[3, 0, 2], srgb_to_linear(torch.tensor(128 / 255, dtype=torch.float64)))
    assert abs(float(tp.texture[3, 0, 2]) - 0.2158) < 1e-3
    raw = ('<bsdf type="roughconductor"><ref name="specular_reflectance" id="t"/><texture type="bitmap" name="alpha">'
           '<string name="filename" value="tex.png"/><boolean name="raw" value="true"/>'
           '<string name="wrap_mode" value="clamp"/></texture></bsdf>')
    top = ('<texture type="bitmap" id="t"><string name="filename" value="tex.png"/>'
           '<boolean name="raw" value="true"/></texture>')
    m = load_mitsuba_xml(_textured_xml(tmp_path, "obj", raw, top), dtype=torch.float64).shapes[0].material
    assert isinstance(m, GGXMaterial) and m.base_color.filter_mode == "linear"
    torch.testing.assert_close(m.base_color.texture[3, 0], torch.tensor([0, 0, 128 / 255], dtype=torch.float64))
    # alpha: the luminance of the raw RGB texels; roughness = sqrt(alpha).
    assert m.roughness.channels == 1 and m.roughness.boundary_mode == "clamp"
    torch.testing.assert_close(m.roughness.texture[0, 0, 0], torch.tensor(0.2126, dtype=torch.float64).sqrt())


@pytest.mark.parametrize("shape, top_red", [("obj", True), ("rectangle", False)])
def test_bitmap_texture_orientation(tmp_path, shape, top_red):
    """An OBJ's UVs are v-up (lumigrad's convention): the image's top row maps to its top. Mitsuba's rectangle
    has v = 0 at y = -1 with v pointing down the image, so Mitsuba shows the image upside down on it (measured
    with Mitsuba 3.6: red at the bottom); the import keeps that."""
    sc = load_mitsuba_xml(_textured_xml(tmp_path, shape), dtype=torch.float64)
    assert sc.shapes[0].mesh.uvs is not None
    # 16 spp: the constant environment's irradiance is a Monte Carlo estimate (one sample can fall to ~0.4)
    img = render_trace(sc.shapes, sc.camera, sc.lights, TraceSettings(spp=16, boundary="none")).image[0]
    up, down = img[5, 8], img[10, 8]
    red, blue = (up, down) if top_red else (down, up)
    assert float(red[0]) > 0.5 and float(red[2]) == 0.0 and float(blue[0]) == 0.0 and float(blue[2]) > 0.1


def test_bitmap_texture_errors(tmp_path):
    def bsdf(body):
        return f'<bsdf type="diffuse"><texture type="bitmap" name="reflectance">{body}</texture></bsdf>'

    fn = '<string name="filename" value="tex.png"/>'
    with pytest.raises(ValueError, match="wrap_mode 'mirror'"):
        load_mitsuba_xml(_textured_xml(tmp_path, "rectangle", bsdf(fn + '<string name="wrap_mode" value="mirror"/>')))
    with pytest.raises(ValueError, match="filter_type"):
        load_mitsuba_xml(_textured_xml(tmp_path, "rectangle", bsdf(fn + '<string name="filter_type" value="ewa"/>')))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_mitsuba_xml(_textured_xml(tmp_path, "rectangle", bsdf('<string name="filename" value="nope.png"/>')))
    with pytest.raises(ValueError, match="no UVs"):
        load_mitsuba_xml(_textured_xml(tmp_path, "sphere", bsdf(fn)))
    with pytest.raises(ValueError, match="checkerboard"):
        load_mitsuba_xml(_textured_xml(tmp_path, "rectangle", '<bsdf type="diffuse"><texture type="checkerboard" '
                                                                'name="reflectance"/></bsdf>'))
    with pytest.raises(ValueError, match="roughplastic"):
        load_mitsuba_xml(_textured_xml(tmp_path, "rectangle", '<bsdf type="roughplastic"><texture type="bitmap" '
                                                                f'name="alpha">{fn}</texture></bsdf>'))
    with pytest.raises(ValueError, match="to_uv"):
        load_mitsuba_xml(_textured_xml(tmp_path, "rectangle", bsdf(fn + '<transform name="to_uv"/>')))
