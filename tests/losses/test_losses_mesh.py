"""Mesh regularizers: topology, Laplacian on flat / spherical meshes, normal consistency, gradchecks, bad inputs."""
import pytest
import torch
import trimesh

from lumigrad.losses.mesh import (
    MeshTopology,
    edge_length_loss,
    laplacian_smoothing,
    mesh_laplacian,
    mesh_topology,
    normal_consistency,
)

D64 = torch.float64
gradcheck = torch.autograd.gradcheck


def _grid(n=6, jitter=0.0, seed=0):
    """Flat n x n grid in z = 0, each quad split along the same diagonal; returns verts, faces, interior mask."""
    ys, xs = torch.meshgrid(torch.arange(n, dtype=D64), torch.arange(n, dtype=D64), indexing="ij")
    verts = torch.stack([xs, ys, torch.zeros_like(xs)], -1).reshape(-1, 3)
    interior = ((xs > 0) & (xs < n - 1) & (ys > 0) & (ys < n - 1)).reshape(-1)
    if jitter:
        g = torch.Generator().manual_seed(seed)
        verts[interior, :2] += jitter * (torch.rand(int(interior.sum()), 2, generator=g, dtype=D64) - 0.5)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    return verts, faces.int(), interior


def _sphere(subdiv=2, noise=0.0, seed=0):
    m = trimesh.creation.icosphere(subdivisions=subdiv)
    verts = torch.tensor(m.vertices, dtype=D64)
    if noise:
        g = torch.Generator().manual_seed(seed)
        verts = verts * (1.0 + noise * torch.randn(verts.shape[0], 1, generator=g, dtype=D64))
    return verts, torch.tensor(m.faces, dtype=torch.int32)


def test_topology_of_two_triangles():
    topo = mesh_topology(torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32), 4)
    assert topo.edges.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]]
    assert topo.face_pairs.tolist() == [[0, 1]]
    assert topo.degree.tolist() == [3, 2, 3, 2]
    verts, faces = _sphere(1)
    topo = mesh_topology(faces, verts.shape[0])
    assert topo.edges.shape[0] == 3 * faces.shape[0] // 2 == topo.face_pairs.shape[0]  # closed manifold


def test_flat_grid_interior_laplacian_is_zero():
    verts, faces, interior = _grid()
    lap = mesh_laplacian(verts, faces, "uniform")
    assert float(lap[interior].abs().max()) < 1e-12
    assert float(lap[~interior].abs().max()) > 0.1  # the boundary is pulled inwards
    # Cotangent weights reproduce linear functions, so any flat interior (jittered too) gives 0.
    verts, faces, interior = _grid(jitter=0.4)
    lap = mesh_laplacian(verts, faces, "cotangent")
    assert float(lap[interior].abs().max()) < 1e-10
    assert float(mesh_laplacian(verts, faces, "uniform")[interior].abs().max()) > 1e-3


@pytest.mark.parametrize("method", ["uniform", "cotangent"])
def test_noisy_sphere_is_less_smooth(method):
    smooth = laplacian_smoothing(*_sphere(), method=method)
    noisy = laplacian_smoothing(*_sphere(noise=0.05), method=method)
    assert float(noisy) > 2.0 * float(smooth)


def test_normal_consistency_plane_and_cube():
    verts, faces, _ = _grid(jitter=0.3)
    assert float(normal_consistency(verts, faces)) < 1e-12
    box = trimesh.creation.box()
    v, f = torch.tensor(box.vertices, dtype=D64), torch.tensor(box.faces, dtype=torch.int32)
    # 18 edges: 6 face diagonals (coplanar, 0) and 12 right-angle edges (1 - cos 90 = 1).
    assert abs(float(normal_consistency(v, f)) - 12.0 / 18.0) < 1e-12
    assert float(normal_consistency(v, f[:1])) == 0.0  # no shared edges


def test_edge_length_loss_values():
    verts, faces, _ = _grid(n=3)  # edges of length 1 (12) and sqrt(2) (4)
    l2 = 2.0**0.5
    assert abs(float(edge_length_loss(verts, faces, 1.0)) - 4 * (l2 - 1) ** 2 / 16) < 1e-12
    mean = (12 + 4 * l2) / 16
    expected_var = (12 * (1 - mean) ** 2 + 4 * (l2 - mean) ** 2) / 16
    assert abs(float(edge_length_loss(verts, faces)) - expected_var) < 1e-12
    assert abs(float(edge_length_loss(verts, faces, 0.0)) - (12 + 8) / 16) < 1e-12


def test_cached_topology_gives_same_results():
    verts, faces = _sphere(1, noise=0.05)
    topo = mesh_topology(faces, verts.shape[0])
    for fn in (laplacian_smoothing, edge_length_loss, normal_consistency):
        assert float(fn(verts, faces)) == float(fn(verts, None, topology=topo))


def test_gradcheck_regularizers():
    verts, faces = _sphere(0, noise=0.1, seed=1)
    topo = mesh_topology(faces, verts.shape[0])
    v = verts.clone().requires_grad_(True)
    assert gradcheck(lambda x: laplacian_smoothing(x, faces, "uniform", topology=topo), (v,))
    assert gradcheck(lambda x: laplacian_smoothing(x, faces, "cotangent", topology=topo), (v,))
    assert gradcheck(lambda x: edge_length_loss(x, faces, topology=topo), (v,))
    assert gradcheck(lambda x: edge_length_loss(x, faces, 0.5, topology=topo), (v,))
    assert gradcheck(lambda x: normal_consistency(x, faces, topology=topo), (v,))


def test_bad_inputs():
    verts, faces = _sphere(0)
    with pytest.raises(ValueError, match=r"laplacian_smoothing\(\): verts must be \[V, 3\]"):
        laplacian_smoothing(verts[:, :2], faces)
    with pytest.raises(ValueError, match=r"edge_length_loss\(\): faces must be int32 \[F, 3\], got float32"):
        edge_length_loss(verts, faces.float())
    with pytest.raises(ValueError, match=r"normal_consistency\(\): faces has vertex index 11 out of range for 5"):
        normal_consistency(verts[:5], faces)
    with pytest.raises(ValueError, match="method must be 'uniform' or 'cotangent'"):
        laplacian_smoothing(verts, faces, method="harmonic")
    with pytest.raises(ValueError, match="target_length"):
        edge_length_loss(verts, faces, -1.0)
    topo = mesh_topology(faces, verts.shape[0])
    assert isinstance(topo, MeshTopology)
    with pytest.raises(ValueError, match="topology was built for 12 vertices"):
        laplacian_smoothing(verts[:5], None, topology=topo)
    with pytest.raises(TypeError, match="topology must be a MeshTopology"):
        normal_consistency(verts, faces, topology=(faces,))
    with pytest.raises(ValueError, match="faces must be an int32 tensor"):
        normal_consistency(verts, None)
    with pytest.raises(ValueError, match=r"mesh_topology\(\): num_verts must be an int"):
        mesh_topology(faces, 12.5)
