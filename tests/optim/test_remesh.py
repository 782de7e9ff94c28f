"""remesh(): isotropic remeshing keeps the surface and hits the edge length."""
from __future__ import annotations

import pytest
import torch
import trimesh

from lumigrad.optim.remesh import remesh


def _sphere(dtype=torch.float32):
    m = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    return torch.tensor(m.vertices, dtype=dtype), torch.tensor(m.faces, dtype=torch.int32), m


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_half_edge_length_quadruples_faces_and_stays_on_sphere(dtype):
    v, f, m = _sphere(dtype)
    h = float(m.edges_unique_length.mean()) / 2
    v2, f2 = remesh(v, f, h, iterations=5)
    assert v2.dtype == dtype and v2.device == v.device and not v2.requires_grad
    assert f2.dtype == torch.int32 and f2.shape[1] == 3
    assert 2.5 < f2.shape[0] / f.shape[0] < 6.0  # ~4x
    # Reprojected onto the input (a faceted sphere whose faces dip to r ~0.98).
    r = v2.norm(dim=1)
    assert r.min() > 0.95 and r.max() < 1.0 + 1e-5
    out = trimesh.Trimesh(v2.double().numpy(), f2.numpy(), process=False)
    assert out.is_watertight
    assert out.edges_unique_length.mean() == pytest.approx(h, rel=0.35)
    assert int(f2.min()) >= 0 and int(f2.max()) < len(v2)


def test_bad_inputs():
    v, f, _ = _sphere()
    with pytest.raises(ValueError, match=r"remesh\(\): target_edge_length must be a finite float > 0, got 0"):
        remesh(v, f, 0)
    with pytest.raises(ValueError, match=r"remesh\(\): iterations must be an int >= 1"):
        remesh(v, f, 0.1, iterations=0)
    with pytest.raises(ValueError, match=r"remesh\(\): faces must be int32"):
        remesh(v, f.float(), 0.1)
    with pytest.raises(ValueError, match=r"remesh\(\): verts must be"):
        remesh(v[:, :2], f, 0.1)
    bad = v.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        remesh(bad, f, 0.1)
