"""Scene files: load a hand-written JSON, save/load round trip, clear errors."""
import json

import pytest
import torch

from lumigrad.render.path import render_trace
from lumigrad.scene.lights import DirectionalLight, PointLight
from lumigrad.scene.materials import GGXMaterial
from lumigrad.scene.scene_file import load_scene, save_scene
from lumigrad.scene.trace_types import MirrorMaterial

SCENE = {
    "format": "lumigrad-scene", "version": 1,
    "camera": {"eye": [0, 1, 3], "target": [0, 0, 0], "fov_y_deg": 40, "width": 8, "height": 6},
    "shapes": [
        {"mesh": {"type": "icosphere", "level": 1}, "transform": {"scale": 0.5, "translate": [0, 0.5, 0]},
         "material": {"type": "ggx", "base_color": [0.8, 0.5, 0.3], "roughness": 0.4, "metallic": 0.1}},
        {"mesh": {"type": "plane", "size": 4}, "material": {"type": "mirror", "reflectance": 0.9}},
        {"mesh": "lamp.obj", "material": {"type": "lambert", "albedo": 0}, "emission": [5, 5, 5]},
    ],
    "lights": [{"type": "point", "position": [1, 3, 1], "intensity": 10},
               {"type": "directional", "to_light": [0, 1, 1], "intensity": 0.5, "color": [1, 0.9, 0.8]}],
    "integrator": {"spp": 2, "max_bounces": 2, "boundary": "none", "seed": 3, "background": [0.1, 0.1, 0.1]},
}
LAMP = "v -0.2 2 -0.2\nv 0.2 2 -0.2\nv -0.2 2 0.2\nv 0.2 2 0.2\nf 1 2 3\nf 2 4 3\n"


def _write(tmp_path, data):
    (tmp_path / "lamp.obj").write_text(LAMP)
    p = tmp_path / "scene.json"
    p.write_text(json.dumps(data))
    return p


def test_load_render_and_round_trip(tmp_path):
    scene = load_scene(_write(tmp_path, SCENE), dtype=torch.float64)
    assert isinstance(scene.shapes[0].material, GGXMaterial) and isinstance(scene.shapes[1].material, MirrorMaterial)
    assert scene.shapes[2].is_emitter and scene.settings.max_bounces == 2 and scene.settings.seed == 3
    assert isinstance(scene.lights[0], PointLight) and isinstance(scene.lights[1], DirectionalLight)
    torch.testing.assert_close(scene.shapes[0].mesh.verts[:, 1].max(), torch.tensor(1.0, dtype=torch.float64))
    img = render_trace(scene.shapes, scene.camera, scene.lights, scene.settings).image
    assert img.shape == (1, 6, 8, 3) and bool(torch.isfinite(img).all()) and float(img.max()) > 0

    out = tmp_path / "saved.json"
    save_scene(out, scene)
    again = load_scene(out, dtype=torch.float64)
    for a, b in zip(scene.shapes, again.shapes):
        torch.testing.assert_close(a.mesh.verts, b.mesh.verts, rtol=0, atol=0)
        assert torch.equal(a.mesh.faces, b.mesh.faces) and type(a.material) is type(b.material)
    torch.testing.assert_close(scene.camera.world_to_cam, again.camera.world_to_cam, rtol=0, atol=0)
    torch.testing.assert_close(scene.camera.K, again.camera.K, rtol=0, atol=0)
    assert again.settings == scene.settings
    img2 = render_trace(again.shapes, again.camera, again.lights, again.settings).image
    torch.testing.assert_close(img, img2)


@pytest.mark.parametrize("patch, match", [
    ({"shapes": []}, "shapes must be a non-empty list"),
    ({"shapes": [{"mesh": {"type": "torus"}}]}, r"shapes\[0\].mesh: mesh type"),
    ({"shapes": [{"mesh": {"type": "plane"}, "material": {"type": "velvet"}}]}, r"shapes\[0\].material"),
    ({"shapes": [{"mesh": {"type": "plane"}, "material": {"type": "lambert", "colour": 1}}]}, "unknown keys"),
    ({"lights": [{"type": "spot"}]}, r"lights\[0\]"),
    ({"integrator": {"spp": 0}}, "spp"),
    ({"integrator": {"bounces": 2}}, "integrator: unknown keys"),
    ({"version": 7}, "unsupported version"),
])
def test_bad_scene_files(tmp_path, patch, match):
    with pytest.raises(ValueError, match=match):
        load_scene(_write(tmp_path, {**SCENE, **patch}))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_scene(tmp_path / "nope.json")


def test_envmap_light_from_image_and_round_trip(tmp_path):
    import numpy as np

    from lumigrad.scene.io import write_image
    from lumigrad.scene.trace_types import EnvironmentLight

    write_image(tmp_path / "sky.png", torch.rand(4, 8, 3))
    data = {**SCENE, "lights": [{"type": "envmap", "image": "sky.png", "scale": 2.0}]}
    scene = load_scene(_write(tmp_path, data), dtype=torch.float64)
    env = scene.lights[0]
    assert isinstance(env, EnvironmentLight) and env.texels.shape == (4, 8, 3) and env.scale == 2.0
    save_scene(tmp_path / "again.json", scene)
    again = load_scene(tmp_path / "again.json", dtype=torch.float64)
    np.testing.assert_array_equal(again.lights[0].texels.numpy(), env.texels.numpy())
    bad = {**SCENE, "lights": [{"type": "envmap"}]}
    with pytest.raises(ValueError, match="envmap needs"):
        load_scene(_write(tmp_path, bad))


def test_textured_materials_load_save_round_trip(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    from lumigrad.scene.materials import TextureParam

    import OpenEXR

    rng = np.random.default_rng(0)
    alb_px = rng.random((4, 6, 3)).astype(np.float32)
    # written by OpenEXR itself (as another tool would), half floats
    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"RGB": alb_px.astype(np.float16)}).write(str(tmp_path / "alb.exr"))
    png = (rng.random((3, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "rough.png", png)
    quad = {"verts": [[-1, 0, 1], [1, 0, 1], [1, 0, -1], [-1, 0, -1]], "faces": [[0, 1, 2], [0, 2, 3]],
            "uvs": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    data = {**SCENE, "shapes": [
        {"mesh": quad, "material": {"type": "lambert", "albedo": {"texture": "alb.exr", "filter_mode": "linear"}}},
        {"mesh": quad, "transform": {"translate": [0, 0.2, 0]},
         "material": {"type": "ggx", "base_color": {"texels": [[[0.2, 0.3, 0.4], [0.5, 0.6, 0.7]]]},
                      "roughness": {"texture": "rough.png", "srgb": True, "boundary_mode": "clamp"}, "metallic": 0}}]}
    scene = load_scene(_write(tmp_path, data), dtype=torch.float32)
    alb = scene.shapes[0].material.albedo
    assert isinstance(alb, TextureParam) and alb.filter_mode == "linear" and alb.texture.shape == (4, 6, 3)
    torch.testing.assert_close(alb.texture, torch.from_numpy(alb_px.astype(np.float16).astype(np.float32)))
    rough = scene.shapes[1].material.roughness
    assert rough.channels == 1 and rough.boundary_mode == "clamp"
    from lumigrad.scene.mitsuba_xml import srgb_to_linear

    torch.testing.assert_close(rough.texture[..., 0], srgb_to_linear(torch.from_numpy(png / 255.0)).float())
    img = render_trace(scene.shapes, scene.camera, scene.lights, scene.settings).image

    out = tmp_path / "sub" / "saved.json"
    save_scene(out, scene)
    saved = json.loads(out.read_text())
    assert saved["shapes"][0]["material"]["albedo"] == {"texture": "saved.shape0.albedo.exr", "filter_mode": "linear"}
    for f in ("saved.shape0.albedo.exr", "saved.shape1.roughness.exr"):  # genuine OpenEXR files (magic number)
        assert (tmp_path / "sub" / f).read_bytes()[:4] == b"\x76\x2f\x31\x01"
    again = load_scene(out, dtype=torch.float32)
    for a, b in zip(scene.shapes, again.shapes):
        torch.testing.assert_close(a.mesh.uvs, b.mesh.uvs, rtol=0, atol=0)
        for k, v in vars(a.material).items():
            w = getattr(b.material, k)
            if isinstance(v, TextureParam):
                torch.testing.assert_close(v.texture, w.texture, rtol=0, atol=0)
                assert (v.filter_mode, v.boundary_mode) == (w.filter_mode, w.boundary_mode)
    torch.testing.assert_close(img, render_trace(again.shapes, again.camera, again.lights, again.settings).image)
    # Bad texture entries name the field.
    for bad, match in (({"texture": "none.png"}, "none.png"), ({"texels": [[1, 2]]}, "albedo"),
                       ({"texture": "alb.exr", "filter_mode": "cubic"}, "filter_mode"),
                       ({"texture": "alb.exr", "wrap": 1}, "unknown texture keys")):
        d = {**data, "shapes": [{"mesh": quad, "material": {"type": "lambert", "albedo": bad}}]}
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            load_scene(_write(tmp_path, d))
    d = {**data, "shapes": [{"mesh": {"type": "plane"}, "material": {"type": "lambert", "albedo": {"texture": "alb.exr"}}}]}
    with pytest.raises(ValueError, match=r"shapes\[0\].*no uvs"):
        load_scene(_write(tmp_path, d))
