"""Mesh validation, normals, sampling, conversion and packing."""
import dataclasses

import pytest
import torch

from lumigrad.geometry.chamfer import chamfer_distance
from lumigrad.geometry.primitives import cube, icosphere
from lumigrad.scene.mesh import Mesh, pack_meshes, unpack_verts

D = torch.float64


def _tet(dtype=torch.float32):
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=dtype)
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=torch.int32)
    return verts, faces


def test_construct_and_sizes():
    v, f = _tet()
    m = Mesh(v, f.long())
    assert m.faces.dtype == torch.int32  # int64 faces are stored as int32
    assert (m.num_verts, m.num_faces) == (4, 4)
    assert "Mesh(verts=float32 [4, 3]" in repr(m)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.verts = v


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(verts=torch.tensor([[0.0, 0, float("nan")]] * 4)), "verts contains"),
        (dict(verts=torch.tensor([[0.0, 0, float("inf")]] * 4)), "verts contains"),
        (dict(verts=torch.zeros(0, 3), faces=torch.zeros(0, 3, dtype=torch.int32)), "verts is empty"),
        (dict(faces=torch.zeros(0, 3, dtype=torch.int32)), "faces is empty"),
        (dict(faces=torch.zeros(4, 3)), r"Mesh\(\): faces must be int32 \[F, 3\], got float32 \[4, 3\]"),
        (dict(faces=torch.zeros(4, 4, dtype=torch.int32)), "faces must be int32"),
        (dict(faces=torch.tensor([[0, 1, 4]], dtype=torch.int32)), "faces has vertex index 4 out of range"),
        (dict(faces=torch.tensor([[0, -1, 2]], dtype=torch.int32)), "faces has negative"),
        (dict(verts=torch.zeros(4, 2)), "verts must be"),
        (dict(verts=torch.zeros(4, 3, dtype=torch.int32)), "verts must be"),
        (dict(vert_colors=torch.zeros(3, 3)), "vert_colors must be"),
        (dict(vert_colors=torch.zeros(4, 3, dtype=D)), "vert_colors must match verts' dtype"),
        (dict(vert_colors=torch.full((4, 3), float("nan"))), "vert_colors contains"),
        (dict(vert_normals=torch.zeros(4, 2)), "vert_normals must be"),
        (dict(uvs=torch.zeros(5, 2)), "faces_uvs is required"),
        (dict(uvs=torch.zeros(5, 2), faces_uvs=torch.zeros(3, 3, dtype=torch.int32)), "faces_uvs must be"),
        (dict(uvs=torch.zeros(5, 2), faces_uvs=torch.full((4, 3), 5, dtype=torch.int32)), "faces_uvs has vertex index 5"),
        (dict(faces_uvs=torch.zeros(4, 3, dtype=torch.int32)), "faces_uvs given without uvs"),
        (dict(texture=torch.zeros(4, 4, 3)), "texture given without uvs"),
        (dict(uvs=torch.zeros(4, 2), texture=torch.zeros(4, 4)), "texture must be"),
        (dict(uvs=torch.zeros(4, 3)), "uvs must be"),
    ],
)
def test_validation_errors_name_the_field(kwargs, match):
    v, f = _tet()
    args = dict(verts=v, faces=f)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Mesh(**args)


def test_type_errors():
    v, f = _tet()
    with pytest.raises(TypeError, match="verts"):
        Mesh(v.tolist(), f)
    with pytest.raises(TypeError, match="faces"):
        Mesh(v, f.tolist())


def test_per_vertex_uvs_default_faces_uvs():
    v, f = _tet()
    m = Mesh(v, f, uvs=torch.rand(4, 2))
    assert torch.equal(m.faces_uvs, m.faces)


def test_normals():
    v, f = icosphere(2, dtype=D)
    m = Mesh(v, f)
    n = m.vertex_normals()
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(len(v), dtype=D))
    assert (n * v).sum(-1).min() > 0.99  # a sphere's normals are its positions
    fn = m.face_normals()
    assert (fn * v[f.long()].mean(1)).sum(-1).min() > 0.98
    areas = m.face_areas()
    assert 0.9 * 4 * torch.pi < areas.sum() < 4 * torch.pi


def test_vertex_normals_are_area_weighted():
    # Vertex 0 is shared by a big triangle in z = 0 and a small one in x = 0.
    v = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0.1, 0], [0, 0, 0.1]], dtype=D)
    f = torch.tensor([[0, 1, 2], [0, 3, 4]], dtype=torch.int32)
    n0 = Mesh(v, f).vertex_normals()[0]
    expected = torch.nn.functional.normalize(torch.tensor([0.01, 0, 4.0], dtype=D), dim=0)
    torch.testing.assert_close(n0, expected)


def test_degenerate_and_isolated_vertices_are_safe():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [5, 5, 5]], dtype=D, requires_grad=True)
    f = torch.tensor([[0, 1, 2]], dtype=torch.int32)  # collinear: zero area; vertex 3 unused
    m = Mesh(v, f)
    n = m.vertex_normals()
    assert torch.equal(n, torch.zeros_like(n))
    (n.sum() + m.face_normals().sum() + m.face_areas().sum()).backward()
    assert torch.isfinite(v.grad).all()


def test_vertex_normals_gradcheck():
    v, f = icosphere(0, dtype=D)
    v = (v + 0.1 * torch.randn(v.shape, dtype=D, generator=torch.Generator().manual_seed(0))).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: Mesh(x, f).vertex_normals(), (v,))
    assert torch.autograd.gradcheck(lambda x: Mesh(x, f).face_normals(), (v,))


def test_bounding_box_and_diagonal():
    v, f = cube(size=2.0)
    m = Mesh(v + torch.tensor([1.0, 2.0, 3.0]), f)
    torch.testing.assert_close(m.bounding_box(), torch.tensor([[0.0, 1, 2], [2, 3, 4]]))
    torch.testing.assert_close(m.diagonal(), torch.tensor(12.0).sqrt())


def test_sample_points():
    v, f = cube(size=2.0, dtype=D)
    m = Mesh(v, f)
    g = torch.Generator().manual_seed(0)
    p = m.sample_points(6000, generator=g)
    assert p.shape == (6000, 3) and p.dtype == D
    # On the surface: max |coordinate| is 1; uniform over the 6 equal-area sides.
    torch.testing.assert_close(p.abs().max(-1).values, torch.ones(6000, dtype=D))
    side = p.abs().argmax(-1) * 2 + (p.gather(1, p.abs().argmax(-1, keepdim=True))[:, 0] > 0).long()
    counts = torch.bincount(side, minlength=6).double()
    assert ((counts - 1000).abs() < 150).all()
    # Reproducible with a seeded generator; differentiable w.r.t. verts.
    assert torch.equal(m.sample_points(10, torch.Generator().manual_seed(3)), m.sample_points(10, torch.Generator().manual_seed(3)))
    vv = v.clone().requires_grad_()
    m.with_verts(vv).sample_points(100, g).sum().backward()
    assert vv.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="n must be"):
        m.sample_points(0)


def test_sample_points_chamfer_between_spheres():
    a = Mesh(*icosphere(3, radius=1.0)).sample_points(4000, torch.Generator().manual_seed(0))
    b = Mesh(*icosphere(3, radius=1.1)).sample_points(4000, torch.Generator().manual_seed(1))
    cd = chamfer_distance(a, b)
    assert 0.1 <= cd < 0.13  # radial gap 0.1 plus sampling spread


def test_with_verts():
    v, f = _tet()
    m = Mesh(v, f, vert_colors=torch.rand(4, 3), vert_normals=torch.rand(4, 3), uvs=torch.rand(4, 2))
    new = (v * 2).requires_grad_()
    m2 = m.with_verts(new)
    assert m2.verts is new and m2.faces is m.faces and m2.vert_colors is m.vert_colors and m2.uvs is m.uvs
    assert m2.vert_normals is None  # stale normals are dropped
    with pytest.raises(ValueError, match="verts contains"):
        m.with_verts(torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match=r"with_verts\(\): new_verts must be"):
        m.with_verts(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="new_verts must be"):
        m.with_verts(torch.zeros(4, 3, dtype=D))


def test_to():
    v, f = _tet()
    m = Mesh(v, f, uvs=torch.rand(7, 2), faces_uvs=torch.randint(0, 7, (4, 3), dtype=torch.int32),
             texture=torch.rand(8, 8, 3))
    m64 = m.to(dtype=D)
    assert m64.verts.dtype == D and m64.uvs.dtype == D and m64.texture.dtype == D
    assert m64.faces.dtype == torch.int32 and m64.faces_uvs.dtype == torch.int32
    assert m64.to(device="cpu").device.type == "cpu"
    with pytest.raises(ValueError, match="dtype"):
        m.to(dtype=torch.int32)


def test_pack_and_unpack():
    a = Mesh(*_tet())
    b = Mesh(*cube())
    va = a.verts.clone().requires_grad_()
    packed = pack_meshes([a.with_verts(va), b])
    assert packed.verts.shape == (12, 3) and packed.faces.shape == (16, 3)
    assert packed.vert_offsets.tolist() == [0, 4, 12] and packed.face_offsets.tolist() == [0, 4, 16]
    assert packed.face_to_mesh.tolist() == [0] * 4 + [1] * 12
    assert packed.faces.dtype == torch.int32
    torch.testing.assert_close(packed.faces[4:] - 4, b.faces)
    # The packed faces index the packed verts: face normals agree mesh by mesh.
    torch.testing.assert_close(Mesh(packed.verts, packed.faces).face_normals()[4:], b.face_normals())
    ua, ub = unpack_verts(packed.verts, packed.vert_offsets)
    torch.testing.assert_close(ub, b.verts)
    ua.sum().backward()
    torch.testing.assert_close(va.grad, torch.ones_like(va))
    with pytest.raises(ValueError, match="empty"):
        pack_meshes([])
    with pytest.raises(ValueError, match="vert_offsets must rise"):
        unpack_verts(packed.verts, torch.tensor([0, 4, 11]))
    with pytest.raises(ValueError, match="meshes\\[1\\]"):
        pack_meshes([a, b.to(dtype=D)])
