"""Rotated environment maps (EnvironmentLight.to_world): lookup, sampling, scene files, bad input.

The comparison with Mitsuba's own rotated ``envmap`` is in tests/validation/test_mitsuba_validation.py.
"""
import math

import pytest
import torch

from lumigrad.render._envmap import EnvMap
from lumigrad.scene.trace_types import EnvironmentLight

DT = torch.float64
CPU = torch.device("cpu")


def _rot(axis: str, deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return torch.tensor(m, dtype=DT)


def _env(h=8, w=16):
    tex = torch.rand(h, w, 3, dtype=DT, generator=torch.Generator().manual_seed(0)) * 0.5
    tex[1, 3] = 8.0  # a bright "sun" texel
    return tex


def _dirs(n, seed=0):
    d = torch.randn(n, 3, dtype=DT, generator=torch.Generator().manual_seed(seed))
    return d / d.norm(dim=-1, keepdim=True)


ROT = _rot("x", 30.0) @ _rot("y", -70.0)


def test_rotated_lookup_is_the_map_at_the_rotated_back_direction():
    tex = _env()
    plain, turned = EnvMap(EnvironmentLight(tex), DT, CPU), EnvMap(EnvironmentLight(tex, to_world=ROT), DT, CPU)
    d = _dirs(500)
    torch.testing.assert_close(turned.eval(d), plain.eval(d @ ROT))  # map frame = R^T d
    torch.testing.assert_close(turned.pdf(d), plain.pdf(d @ ROT))
    # The brightest direction moves with the map: R times the unrotated sun direction.
    sun = plain.sample(4000, torch.Generator().manual_seed(1))[0][plain.eval(plain.sample(4000, torch.Generator().manual_seed(1))[0])[:, 0].argmax()]
    torch.testing.assert_close(turned.eval((sun @ ROT.T)[None]), plain.eval(sun[None]))
    assert not torch.allclose(turned.eval(d), plain.eval(d))


def test_rotated_sampler_reports_its_density_and_integrates_the_same_radiance():
    tex = _env()
    em = EnvMap(EnvironmentLight(tex, to_world=ROT), DT, CPU)
    d = _dirs(200_000)
    assert abs(float(em.pdf(d).mean()) * 4 * math.pi - 1) < 0.02
    ds, pdf = em.sample(100_000, torch.Generator().manual_seed(2))
    torch.testing.assert_close(ds.norm(dim=-1), torch.ones(ds.shape[0], dtype=DT))
    # Equal up to rounding: rotating out and back moves a direction by ~1e-16, which can cross a
    # cell boundary or change sin(theta) near a pole for a handful of the samples.
    rel = ((pdf - em.pdf(ds)).abs() / pdf).double()
    assert float((rel > 1e-6).double().mean()) < 1e-3 and float(rel.median()) < 1e-12
    # A rotation does not change the total: compare with the unrotated map's importance estimate.
    plain = EnvMap(EnvironmentLight(tex), DT, CPU)
    dp, pp = plain.sample(100_000, torch.Generator().manual_seed(3))
    torch.testing.assert_close((em.eval(ds) / pdf[:, None]).mean(0), (plain.eval(dp) / pp[:, None]).mean(0),
                               rtol=0.03, atol=0)


def test_to_world_accepts_4x4_and_refuses_non_rotations():
    tex = _env()
    m4 = torch.eye(4, dtype=DT)
    m4[:3, :3] = ROT
    m4[:3, 3] = torch.tensor([5.0, 6.0, 7.0])  # a translation means nothing for directions
    torch.testing.assert_close(EnvironmentLight(tex, to_world=m4).to_world, ROT)
    for bad, msg in [(2 * torch.eye(3), "rotation"), (torch.diag(torch.tensor([1.0, 1.0, -1.0])), "rotation"),
                     (torch.eye(2), r"\[3, 3\]"), ([[1, 0], [0]], "to_world"), (torch.full((3, 3), float("nan")), "finite")]:
        with pytest.raises(ValueError, match=msg):
            EnvironmentLight(tex, to_world=bad)


def test_scene_file_and_mitsuba_xml_carry_the_rotation(tmp_path):
    import json

    from lumigrad.scene.io import write_image
    from lumigrad.scene.mitsuba_xml import load_mitsuba_xml
    from lumigrad.scene.scene_file import load_scene, save_scene

    write_image(tmp_path / "sky.png", torch.rand(4, 8, 3))
    xml = tmp_path / "s.xml"
    body = """<scene version="3.0.0">
      <sensor type="perspective"><transform name="to_world"><lookat origin="0,0,3" target="0,0,0" up="0,1,0"/></transform>
        <film type="hdrfilm"><integer name="width" value="8"/><integer name="height" value="6"/></film></sensor>
      <shape type="sphere"/>
      <emitter type="envmap"><string name="filename" value="sky.png"/>
        <transform name="to_world">{}</transform></emitter>
    </scene>"""
    xml.write_text(body.format('<rotate y="1" angle="90"/>'))
    sc = load_mitsuba_xml(xml, dtype=DT)
    env = sc.lights[0]
    torch.testing.assert_close(env.to_world, _rot("y", 90.0), atol=1e-12, rtol=0)
    save_scene(tmp_path / "s.json", sc)
    again = load_scene(tmp_path / "s.json", dtype=DT)
    torch.testing.assert_close(again.lights[0].to_world, env.to_world)
    xml.write_text(body.format('<scale value="2"/>'))
    with pytest.raises(ValueError, match="envmap.*rotation"):
        load_mitsuba_xml(xml)
    spec = json.loads((tmp_path / "s.json").read_text())
    spec["lights"][0]["to_world"] = [[1, 0, 0], [0, 1, 0]]
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="to_world"):
        load_scene(tmp_path / "bad.json")
