"""Primitive meshes and the Chamfer distance."""
import time

import pytest
import torch

from lumigrad.geometry.chamfer import chamfer_distance, nearest_neighbor
from lumigrad.geometry.primitives import cube, icosphere, plane


def _outward(verts, faces):
    """Signed volume (> 0 for outward winding) and face normals."""
    f = faces.long()
    v0, v1, v2 = verts[f[:, 0]], verts[f[:, 1]], verts[f[:, 2]]
    n = torch.cross(v1 - v0, v2 - v0, dim=-1)
    return (v0 * n).sum() / 6, n


@pytest.mark.parametrize("s", [0, 1, 3])
def test_icosphere(s):
    v, f = icosphere(s, radius=2.0, dtype=torch.float64)
    assert v.shape == (10 * 4**s + 2, 3) and f.shape == (20 * 4**s, 3)
    assert v.dtype == torch.float64 and f.dtype == torch.int32
    torch.testing.assert_close(v.norm(dim=-1), torch.full((v.shape[0],), 2.0, dtype=torch.float64))
    vol, n = _outward(v, f)
    assert vol > 0
    assert ((n * v[f.long()].mean(1)).sum(-1) > 0).all()


def test_cube():
    v, f = cube(size=3.0)
    assert v.shape == (8, 3) and f.shape == (12, 3)
    assert v.abs().max() == 1.5
    vol, n = _outward(v, f)
    torch.testing.assert_close(vol, torch.tensor(27.0))
    centroids = v[f.long()].mean(1)
    assert ((n * centroids).sum(-1) > 0).all()
    # Each face normal is axis-aligned.
    assert (n.abs().max(-1).values * 1.0 == n.norm(dim=-1)).all()


def test_plane():
    v, f = plane(size=4.0, resolution=3)
    assert v.shape == (16, 3) and f.shape == (18, 3)
    assert (v[:, 1] == 0).all() and v[:, 0].min() == -2 and v[:, 2].max() == 2
    _, n = _outward(v, f)
    assert (n[:, 1] > 0).all()  # faces the +Y (up) side
    torch.testing.assert_close(0.5 * n.norm(dim=-1).sum(), torch.tensor(16.0))


def test_primitive_bad_args():
    with pytest.raises(ValueError, match="subdivisions"):
        icosphere(-1)
    with pytest.raises(ValueError, match="radius"):
        icosphere(1, radius=0.0)
    with pytest.raises(ValueError, match="resolution"):
        plane(resolution=0)
    with pytest.raises(ValueError, match="size"):
        cube(size=float("nan"))


def test_chamfer_values():
    a = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    b = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]])
    # a -> b: 0, 0; b -> a: 0, 0, 2.
    torch.testing.assert_close(chamfer_distance(a, b), torch.tensor(0.5 * (0.0 + 2.0 / 3.0)))
    torch.testing.assert_close(chamfer_distance(a, b, squared=True), torch.tensor(0.5 * (4.0 / 3.0)))
    assert chamfer_distance(a, a) == 0


def test_chamfer_matches_brute_force_and_chunking():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(300, 3, generator=g, dtype=torch.float64), torch.rand(200, 3, generator=g, dtype=torch.float64)
    d = torch.cdist(a, b)
    ref = 0.5 * (d.min(1).values.mean() + d.min(0).values.mean())
    torch.testing.assert_close(chamfer_distance(a, b), ref)
    torch.testing.assert_close(chamfer_distance(a, b, chunk_elems=7), ref)
    torch.testing.assert_close(nearest_neighbor(a, b), d.argmin(1))
    torch.testing.assert_close(nearest_neighbor(a, b, chunk_elems=100, method="brute"), d.argmin(1))


def test_chamfer_gradient():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(20, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.rand(15, 3, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(chamfer_distance, (a, b))
    # Coincident points: zero distance, finite gradient.
    p = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    chamfer_distance(p, p.detach()).backward()
    assert torch.isfinite(p.grad).all()


def test_chamfer_50k_points_is_fast():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(50_000, 3, generator=g), torch.rand(50_000, 3, generator=g)
    a.requires_grad_()
    t0 = time.perf_counter()
    chamfer_distance(a, b).backward()
    assert time.perf_counter() - t0 < 10
    assert a.grad.shape == a.shape


def test_chamfer_bad_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        chamfer_distance(torch.zeros(0, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="b_points"):
        chamfer_distance(torch.zeros(3, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="dtype"):
        chamfer_distance(torch.zeros(3, 3), torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError):
        chamfer_distance([[0, 0, 0]], torch.zeros(4, 3))
