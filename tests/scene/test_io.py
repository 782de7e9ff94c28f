"""Mesh, image and transforms.json IO: real files, round trips, broken inputs."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.scene.io import read_image, read_mesh, read_transforms_json, write_image, write_mesh
from lumigrad.scene.mesh import Mesh



def _corner_uvs(m):
    return m.uvs[m.faces_uvs.long()]


def _textured_mesh(dtype=torch.float32):
    v, f = icosphere(1, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    # Own UV topology: 3 distinct UVs per face (more UVs than positions, like a seam-cut atlas).
    uvs = torch.rand(f.shape[0] * 3, 2, generator=g, dtype=dtype)
    faces_uvs = torch.arange(f.shape[0] * 3, dtype=torch.int32).reshape(-1, 3)
    tex = (torch.rand(16, 8, 3, generator=g, dtype=dtype) * 255).round() / 255  # exact in uint8
    return Mesh(v, f, uvs=uvs, faces_uvs=faces_uvs, texture=tex)


def _no_temp_files(d: Path):
    return not [p for p in d.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # shared dataset; skips when absent
def test_spot_obj_keeps_uv_topology():
    m = read_mesh(shared_file("spot/spot_triangulated.obj"))
    assert (m.num_verts, m.uvs.shape[0], m.num_faces) == (2930, 3225, 5856)
    assert m.faces_uvs.shape == (5856, 3) and m.texture is None
    assert torch.unique(m.faces).numel() == 2930  # every position used once welded
    lines = shared_file("spot/spot_triangulated.obj").read_text().splitlines()
    first_v = next(ln for ln in lines if ln.startswith("v "))
    first_vt = next(ln for ln in lines if ln.startswith("vt "))
    first_f = next(ln for ln in lines if ln.startswith("f "))  # "f 739/1 735/2 736/3"
    torch.testing.assert_close(m.verts[0], torch.tensor([float(x) for x in first_v.split()[1:]]))
    torch.testing.assert_close(m.uvs[0], torch.tensor([float(x) for x in first_vt.split()[1:3]]))
    corners = [c.split("/") for c in first_f.split()[1:]]
    assert m.faces[0].tolist() == [int(c[0]) - 1 for c in corners]
    assert m.faces_uvs[0].tolist() == [int(c[1]) - 1 for c in corners]
    # The quad version (2928 quads) fan-triangulates to the same counts.
    q = read_mesh(shared_file("spot/spot_quadrangulated.obj"))
    assert (q.num_verts, q.uvs.shape[0], q.num_faces) == (2930, 3225, 5856)


@pytest.mark.slow  # shared dataset; skips when absent
def test_obj_with_mtl_texture_and_normals():
    cow = read_mesh(shared_file("pytorch3d_cow/cow.obj"))
    assert cow.texture is not None and cow.texture.shape[:2] == (1024, 1024) and cow.texture.dtype == torch.float32
    assert 0 <= cow.texture.min() and cow.texture.max() <= 1
    suz = read_mesh(shared_file("suzanne/suzanne.obj"), dtype=torch.float64)
    assert suz.vert_normals is not None and suz.verts.dtype == torch.float64
    torch.testing.assert_close(suz.vert_normals.norm(dim=-1), torch.ones(suz.num_verts, dtype=torch.float64))
    # File normals and recomputed ones roughly agree (both outward).
    assert (suz.vert_normals * suz.vertex_normals()).sum(-1).mean() > 0.8


def test_obj_round_trip_with_uvs_texture_normals_colours(tmp_path):
    m = _textured_mesh()
    m = Mesh(m.verts, m.faces, vert_colors=torch.rand(m.num_verts, 3), vert_normals=m.verts.clone(),
             uvs=m.uvs, faces_uvs=m.faces_uvs, texture=m.texture)
    write_mesh(tmp_path / "a.obj", m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mtl", "a.obj", "a_texture.png"]
    r = read_mesh(tmp_path / "a.obj")
    assert torch.equal(r.verts, m.verts) and torch.equal(r.faces, m.faces) and torch.equal(r.faces_uvs, m.faces_uvs)
    assert torch.equal(r.uvs, m.uvs) and torch.equal(r.vert_colors, m.vert_colors)
    torch.testing.assert_close(r.vert_normals, m.vert_normals)
    torch.testing.assert_close(r.texture, m.texture, atol=1e-6, rtol=0)
    # float64 keeps full precision.
    m64 = m.to(dtype=torch.float64).with_verts(m.verts.double() + 1e-12)
    write_mesh(tmp_path / "b.obj", m64)
    assert torch.equal(read_mesh(tmp_path / "b.obj", dtype=torch.float64).verts, m64.verts)


def test_obj_parser_cases(tmp_path):
    p = tmp_path / "q.obj"
    p.write_text(
        "# comment\n o thing\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\ng grp\ns off\n"
        "f 1/1 2/2 3/3 4/4\n"  # quad -> 2 triangles
        "f -4/-4 -2/-2 -1/-1\n"  # relative indices
    )
    m = read_mesh(p)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]
    assert torch.equal(m.faces_uvs, m.faces)
    c = tmp_path / "c.obj"
    c.write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nf 1 2 3\n")
    mc = read_mesh(c)
    torch.testing.assert_close(mc.vert_colors, torch.eye(3))
    n = tmp_path / "n.obj"  # v//vn form, one normal for all
    n.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\n")
    assert read_mesh(n).vert_normals.tolist() == [[0.0, 0.0, 1.0]] * 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "index out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 0\n", r"bad.obj:4: .*vertex index 0 \(OBJ indices start at 1\)"),
        ("v 0 0 x\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "malformed"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("hello world\n", "no vertices"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 nan\nf 1 2 3\n", "verts contains"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "at least 3"),
    ],
)
def test_broken_obj(tmp_path, text, match):
    p = tmp_path / "bad.obj"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        read_mesh(p)
    assert "bad.obj" in str(e.value)


@pytest.mark.parametrize("ext", [".obj", ".ply", ".glb", ".png"])
def test_garbage_bytes(tmp_path, ext):
    p = tmp_path / f"junk{ext}"
    p.write_bytes(bytes(range(256)) * 4)
    reader = read_image if ext == ".png" else read_mesh
    with pytest.raises(ValueError, match="junk") as e:
        reader(p)
    assert str(p) in str(e.value)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.obj"):
        read_mesh(tmp_path / "nope.obj")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "a.stl").write_text("solid")
    with pytest.raises(ValueError, match="unsupported format"):
        read_mesh(tmp_path / "a.stl")
    with pytest.raises(ValueError, match="unsupported format"):
        write_mesh(tmp_path / "a.stl", _textured_mesh())
    with pytest.raises(TypeError, match="Mesh"):
        write_mesh(tmp_path / "a.obj", "mesh")


def test_ply_round_trip(tmp_path):
    v, f = icosphere(1)
    colors = torch.randint(0, 256, (v.shape[0], 3)).float() / 255
    m = Mesh(v, f, vert_colors=colors)
    write_mesh(tmp_path / "a.ply", m)
    r = read_mesh(tmp_path / "a.ply")
    assert torch.equal(r.verts, m.verts) and torch.equal(r.faces, m.faces)
    torch.testing.assert_close(r.vert_colors, colors)
    assert _no_temp_files(tmp_path)


def test_glb_round_trip_with_texture(tmp_path):
    m = _textured_mesh()
    write_mesh(tmp_path / "a.glb", m)
    r = read_mesh(tmp_path / "a.glb")
    # Seam-split vertices are welded back: same positions and triangles, same per-corner UVs.
    assert r.num_verts == m.num_verts
    torch.testing.assert_close(r.verts[r.faces.long()], m.verts[m.faces.long()])
    torch.testing.assert_close(_corner_uvs(r), _corner_uvs(m), atol=1e-6, rtol=0)
    torch.testing.assert_close(r.texture, m.texture, atol=1e-6, rtol=0)
    mc = Mesh(m.verts, m.faces, vert_colors=torch.full((m.num_verts, 3), 0.4))
    write_mesh(tmp_path / "c.glb", mc)
    rc = read_mesh(tmp_path / "c.glb")
    torch.testing.assert_close(rc.vert_colors, torch.full_like(mc.vert_colors, 102 / 255))
    assert _no_temp_files(tmp_path)


def test_image_round_trip(tmp_path):
    img = torch.rand(5, 7, 3)
    img[0, 0] = torch.tensor([-1.0, 2.0, 0.5])  # clamped
    write_image(tmp_path / "a.png", img[None])
    r = read_image(tmp_path / "a.png")
    assert r.shape == (5, 7, 3) and r.dtype == torch.float32
    expected = (img.clamp(0, 1) * 255).round() / 255
    torch.testing.assert_close(r, expected, atol=1e-6, rtol=0)
    assert r[0, 0].tolist() == [0.0, 1.0, pytest.approx(128 / 255)]
    write_image(tmp_path / "g.png", torch.full((4, 4, 1), 0.5))
    assert read_image(tmp_path / "g.png", dtype=torch.float64).shape == (4, 4, 1)
    rgba = torch.rand(3, 3, 4)
    write_image(tmp_path / "rgba.png", rgba)
    assert read_image(tmp_path / "rgba.png").shape == (3, 3, 4)
    assert _no_temp_files(tmp_path)


def test_write_image_errors(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "n.png", torch.full((2, 2, 3), float("nan")))
    assert not (tmp_path / "n.png").exists()
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        write_image(tmp_path / "n.png", torch.zeros(2, 2, 2, 3))
    with pytest.raises(TypeError):
        write_image(tmp_path / "n.png", np.zeros((2, 2, 3)))


@pytest.mark.slow  # shared dataset; skips when absent
def test_lego_transforms():
    path = shared_file("nerf_synthetic_lego_200/transforms_train.json")
    cs = read_transforms_json(path, near=2.0, far=6.0)
    cam = cs.camera
    assert cam.batch_size == 80 and (cam.width, cam.height) == (200, 200) and len(cs.image_paths) == 80
    assert all(p.is_file() and p.suffix == ".png" for p in cs.image_paths)
    f = 0.5 * 200 / math.tan(0.5 * 0.6911112070083618)
    torch.testing.assert_close(cam.K[0], torch.tensor([[f, 0, 100], [0, f, 100], [0, 0, 1.0]]))
    centres = cam.camera_center()
    torch.testing.assert_close(centres.norm(dim=-1), torch.full((80,), 4.0311), atol=1e-3, rtol=0)
    # Each camera looks at the origin: it lands on the image centre, in front of the camera.
    uv = cam.project_to_pixels(torch.zeros(1, 3))
    torch.testing.assert_close(uv, torch.full((80, 1, 2), 100.0), atol=1e-3, rtol=0)
    pos = cam.project(torch.zeros(1, 3))
    assert (pos[..., 3] > 0).all() and (pos[..., 2].abs() < pos[..., 3]).all()  # inside [near, far]
    # The OpenGL matrices are the file's, and the camera exports them back.
    first = json.loads(path.read_text())["frames"][0]["transform_matrix"]
    torch.testing.assert_close(cs.cam_to_world_gl[0], torch.tensor(first))
    torch.testing.assert_close(cam.cam_to_world_opengl(), cs.cam_to_world_gl, atol=1e-5, rtol=0)


def _write_json(tmp_path, meta):
    p = tmp_path / "transforms.json"
    p.write_text(json.dumps(meta))
    return p


def _pose(z):
    return [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, z], [0, 0, 0, 1]]


def test_nerfstudio_layout(tmp_path):
    meta = {
        "camera_model": "OPENCV", "fl_x": 50.0, "fl_y": 52.0, "cx": 31.0, "cy": 23.0, "w": 64, "h": 48,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": [
            {"file_path": "images/a.png", "transform_matrix": _pose(3.0)},
            {"file_path": "images/b.png", "transform_matrix": _pose(4.0)[:3], "fl_x": 60.0},
        ],
    }
    cs = read_transforms_json(_write_json(tmp_path, meta), dtype=torch.float64)
    k = cs.camera.K
    assert k.dtype == torch.float64 and (cs.camera.width, cs.camera.height) == (64, 48)
    assert k[:, 0, 0].tolist() == [50.0, 60.0] and k[:, 1, 1].tolist() == [52.0, 52.0]
    assert k[0, 0, 2] == 31.0 and k[0, 1, 2] == 23.0
    assert cs.image_paths[0] == tmp_path / "images/a.png"
    # Identity OpenGL pose at z = 3 looks down -z: the world origin is 3 units in front.
    torch.testing.assert_close(cs.camera.project_to_pixels(torch.zeros(1, 3, dtype=torch.float64))[0, 0],
                               torch.tensor([31.0, 23.0], dtype=torch.float64))


def test_size_from_first_image(tmp_path):
    write_image(tmp_path / "r_0.png", torch.zeros(12, 20, 3))
    meta = {"camera_angle_x": 1.0, "frames": [{"file_path": "./r_0", "transform_matrix": _pose(2.0)}]}
    cs = read_transforms_json(_write_json(tmp_path, meta))
    assert (cs.camera.width, cs.camera.height) == (20, 12)
    torch.testing.assert_close(cs.camera.K[0, 0, 0], torch.tensor(10.0 / math.tan(0.5)))


@pytest.mark.parametrize(
    "meta, exc, match",
    [
        ({"camera_angle_x": 1.0}, ValueError, "no 'frames'"),
        ({"w": 4, "h": 4, "frames": [{"file_path": "a.png", "transform_matrix": _pose(1.0)}]}, ValueError,
         "no focal length"),
        ({"camera_angle_x": 1.0, "frames": [{"file_path": "a.png"}]}, ValueError, "transform_matrix"),
        ({"camera_angle_x": 1.0, "w": 4, "h": 4, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 0]]}]},
         ValueError, "4x4"),
        ({"camera_angle_x": 1.0, "frames": [{"file_path": "missing", "transform_matrix": _pose(1.0)}]},
         FileNotFoundError, "missing"),
        ({"camera_model": "OPENCV_FISHEYE", "fl_x": 5, "w": 4, "h": 4,
          "frames": [{"file_path": "a.png", "transform_matrix": _pose(1.0)}]}, ValueError, "not supported"),
        ({"fl_x": 5, "frames": [{"file_path": "a.png", "transform_matrix": _pose(1.0), "w": 4, "h": 4},
                                {"file_path": "b.png", "transform_matrix": _pose(1.0), "w": 8, "h": 4}]},
         ValueError, "mixes image sizes"),
    ],
)
def test_broken_transforms(tmp_path, meta, exc, match):
    p = _write_json(tmp_path, meta)
    with pytest.raises(exc, match=match) as e:
        read_transforms_json(p)
    assert "transforms.json" in str(e.value)


def test_transforms_not_json(tmp_path):
    p = tmp_path / "transforms.json"
    p.write_bytes(b"\x00\xff garbage")
    with pytest.raises(ValueError, match="transforms.json"):
        read_transforms_json(p)
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_transforms_json(tmp_path / "nothing.json")


def test_transforms_ragged_matrix(tmp_path):
    meta = {"fl_x": 5, "w": 4, "h": 4, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 0], [1]]}]}
    with pytest.raises(ValueError, match="transforms.json frame 0"):
        read_transforms_json(_write_json(tmp_path, meta))


def test_exr_write_read_round_trip_and_bad_files(tmp_path):
    from lumigrad.scene.io import write_exr

    g = torch.Generator().manual_seed(0)
    for c in (1, 3, 4):
        img = torch.rand(5, 7, c, generator=g, dtype=torch.float64) * 10 - 2  # linear, unclamped
        write_exr(tmp_path / f"t{c}.exr", img)
        raw = (tmp_path / f"t{c}.exr").read_bytes()
        assert raw[:4] == b"\x76\x2f\x31\x01"  # an OpenEXR file, not a TIFF named .exr
        back = read_image(tmp_path / f"t{c}.exr", dtype=torch.float64)
        torch.testing.assert_close(back, img.float().double(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="write_exr.*C in"):
        write_exr(tmp_path / "bad.exr", torch.zeros(4, 4, 2))
    (tmp_path / "broken.exr").write_bytes(b"not an exr")
    with pytest.raises(ValueError, match="broken.exr.*OpenEXR"):
        read_image(tmp_path / "broken.exr")
