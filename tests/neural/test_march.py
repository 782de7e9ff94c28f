"""march_grid kernel vs its torch reference, and bad inputs."""
import pytest
import torch

from lumigrad.ops._march_ref import march_grid_ref
from lumigrad.ops.march import march_grid
from lumigrad.ops.volume_render import ray_aabb_intersect


def _rays(R, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    origins = (torch.rand(R, 3, generator=g, dtype=dtype) - 0.5) * 6
    target = (torch.rand(R, 3, generator=g, dtype=dtype) - 0.5) * 1.5
    dirs = torch.nn.functional.normalize(target - origins, dim=-1)
    aabb = torch.tensor([-1.0, -1.2, -0.8, 1.1, 1.0, 0.9], dtype=dtype)
    tn, tf, hit = ray_aabb_intersect(origins, dirs, aabb)
    tf = torch.where(hit, tf, tn)
    occ = torch.rand(8, 8, 8, generator=g) < 0.3
    return origins, dirs, tn, tf, torch.rand(R, generator=g, dtype=dtype), occ, aabb


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_reference(dtype):
    o, d, tn, tf, off, occ, aabb = _rays(500, dtype)
    a = march_grid(o, d, tn, tf, off, 0.05, occ, aabb)
    b = march_grid_ref(o, d, tn, tf, off, 0.05, occ, aabb)
    assert a.t_starts.numel() > 1000  # many samples, some rays empty: both branches hit
    assert int((a.packed_info[:, 1] == 0).sum()) > 0
    torch.testing.assert_close(a.packed_info, b.packed_info, atol=0, rtol=0)
    torch.testing.assert_close(a.ray_indices, b.ray_indices, atol=0, rtol=0)
    torch.testing.assert_close(a.t_starts, b.t_starts, atol=0, rtol=0)
    torch.testing.assert_close(a.t_ends, b.t_ends, atol=0, rtol=0)
    # every kept midpoint is in an occupied cell; an all-empty grid keeps nothing
    mid = 0.5 * (a.t_starts + a.t_ends)
    assert bool((mid < tf[a.ray_indices]).all())
    empty = march_grid(o, d, tn, tf, off, 0.05, torch.zeros_like(occ), aabb)
    assert empty.t_starts.numel() == 0 and int(empty.packed_info[:, 1].sum()) == 0


def test_bad_inputs():
    o, d, tn, tf, off, occ, aabb = _rays(4, torch.float32)
    with pytest.raises(ValueError, match="march_grid\\(\\): occupied"):
        march_grid(o, d, tn, tf, off, 0.05, occ.float(), aabb)
    with pytest.raises(ValueError, match="step_size"):
        march_grid(o, d, tn, tf, off, 0.0, occ, aabb)
    with pytest.raises(ValueError, match="R=4 rows"):
        march_grid(o, d[:3], tn, tf, off, 0.05, occ, aabb)
    with pytest.raises(ValueError, match="grid_aabb"):
        march_grid(o, d, tn, tf, off, 0.05, occ, aabb.flip(0))
    with pytest.raises(ValueError, match="dtype"):
        march_grid(o, d.double(), tn, tf, off, 0.05, occ, aabb)


def test_grid_samples_match_occupancy_samples():
    from lumigrad.fields.occupancy import OccupancyGrid
    from lumigrad.render.volume import grid_samples, occupancy_samples

    o, d, _, _, off, occ, aabb = _rays(300, torch.float32, seed=3)
    grid = OccupancyGrid(aabb, 8)
    grid.restrict(occ)
    a = grid_samples(o, d, grid.occupied, grid.aabb, 0.04, offsets=off[:, None])
    b = occupancy_samples(o, d, grid.aabb, grid.query, 0.04, offsets=off[:, None])
    assert a.t_starts.numel() > 500
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=0, rtol=0)
