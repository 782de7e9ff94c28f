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
