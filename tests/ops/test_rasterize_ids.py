"""Tests for lumigrad.ops.rasterize._rasterize_ids (the tracer's ids-only raster pass) and the
workspace's cached views: bitwise agreement with rasterize, edge cases, bad inputs."""
import pytest
import torch

from lumigrad.ops.rasterize import RasterizeWorkspace, _forward, _rasterize_ids, rasterize
from test_rasterize import DTYPES, _icosphere, _random_scene

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _ids_of(pos, tri, res):
    """What _rasterize_ids must equal: rasterize's id channel minus one, as int32 [B, H*W]."""
    rast = rasterize(pos, tri, res).rast
    return (rast[..., 3].to(torch.int32) - 1).reshape(rast.shape[0], -1)


def _quads_on_centres():
    # Full-screen quad split along a diagonal through pixel centres (fill rule on shared edges).
    pos = torch.tensor([[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], [-1.0, 1.0, 0.0, 1.0]])
    return pos, torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _depth_ties():
    # The same triangle three times at one depth (ties: the smallest id wins), one wound the
    # other way (a back face), and a nearer small one over part of them.
    base = torch.tensor([[-0.9, -0.8, 0.2, 1.0], [0.8, -0.9, 0.2, 1.0], [0.1, 0.9, 0.2, 1.0]])
    near = torch.tensor([[-0.2, -0.2, -0.3, 1.0], [0.3, -0.2, -0.3, 1.0], [0.0, 0.3, -0.3, 1.0]])
    pos = torch.cat([base, near])
    tri = torch.tensor([[3, 4, 5], [0, 1, 2], [1, 0, 2], [0, 1, 2]], dtype=torch.int32)
    return pos, tri


@pytest.mark.parametrize("dtype", DTYPES)
def test_ids_equal_rasterize(dtype):
    scenes = [
        (*_random_scene(dtype, batch=2, seed=5, behind=True), (33, 40)),
        (*_icosphere(3, dtype), (45, 38)),  # dense: small triangles, back faces behind front faces
        (*(t.to(dtype) if t.is_floating_point() else t for t in _quads_on_centres()), (8, 8)),
        (*(t.to(dtype) if t.is_floating_point() else t for t in _depth_ties()), (17, 19)),
    ]
    for pos, tri, res in scenes:
        want = _ids_of(pos, tri, res)
        assert torch.equal(_rasterize_ids(pos, tri, res), want)
        assert (want >= 0).any() and (want == -1).any() or res == (8, 8)
    pos, tri = _quads_on_centres()
    ids = _rasterize_ids(pos.to(dtype), tri, (8, 8))
    assert torch.equal(torch.unique(ids), torch.tensor([0, 1], dtype=torch.int32))  # every pixel exactly once
    pos, tri = _depth_ties()
    ids = _rasterize_ids(pos.to(dtype), tri, (17, 19))
    assert set(torch.unique(ids).tolist()) == {-1, 0, 1}  # ties to the smaller id: 2 and 3 never win


@pytest.mark.parametrize("device", DEVICES)
def test_ids_workspace_and_out(device):
    # On CUDA _rasterize_ids runs rasterize's atomic path and converts its id channel.
    ws = RasterizeWorkspace()
    pos, tri = (t.to(device) for t in _random_scene(torch.float32, batch=2, seed=1, behind=True))
    want = _ids_of(pos, tri, (21, 23))
    out = torch.full((2, 3, 21 * 23), 7, dtype=torch.int32, device=device)
    for s in range(3):  # strided slices of a [B, S, H*W] tensor, as the tracer passes them
        assert _rasterize_ids(pos, tri, (21, 23), workspace=ws, out=out[:, s]) is not None
    assert torch.equal(out, want[:, None].expand(2, 3, -1))
    flat = torch.empty(2, 21 * 23, dtype=torch.int32, device=device)
    assert _rasterize_ids(pos, tri, (21, 23), workspace=ws, out=flat) is flat and torch.equal(flat, want)
    # The same workspace then serves rasterize, whose outputs are unchanged by the ids passes.
    rast, db = rasterize(pos, tri, (21, 23), workspace=ws)
    r0, d0 = rasterize(pos, tri, (21, 23))
    assert torch.equal(rast, r0) and torch.equal(db, d0)
    # Empty image: all -1.
    away = pos.clone()
    away[..., 0] += 10 * away[..., 3].abs()
    assert torch.all(_rasterize_ids(away, tri, (21, 23), workspace=ws) == -1)


def test_workspace_views_follow_shape_and_geometry_changes():
    # Cached views and Warp descriptors must follow every change of resolution, batch, face
    # count and band-list length (moving geometry), and the depth scratch must be left empty.
    ws = RasterizeWorkspace()
    cases = [(0, (20, 24), 2, 1.0), (0, (20, 24), 2, 0.5), (0, (20, 24), 2, 2.0), (1, (50, 7), 1, 1.0),
             (2, (20, 24), 3, 1.0), (2, (3, 90), 3, 1.3), (0, (20, 24), 2, 1.0)]  # fmt: skip
    for seed, res, batch, zoom in cases:
        pos, tri = _random_scene(torch.float32, batch=batch, seed=seed, behind=seed == 1)
        pos = pos * torch.tensor([zoom, zoom, 1.0, 1.0])
        rast, db = rasterize(pos, tri, res, workspace=ws)
        r0, d0 = rasterize(pos, tri, res)
        assert torch.equal(rast, r0) and torch.equal(db, d0)
        rast, db = rasterize(pos, tri, res, grad_db=False, workspace=ws)
        assert torch.equal(rast, r0) and db.shape[-1] == 0
        assert torch.equal(_rasterize_ids(pos, tri, res, workspace=ws), _ids_of(pos, tri, res))


def test_ids_float64_and_atomic_mode_rejected():
    pos, tri = _random_scene(torch.float64, batch=1, seed=3)
    assert torch.equal(_rasterize_ids(pos[0], tri, (16, 16)), _ids_of(pos[0], tri, (16, 16)))
    ids = torch.empty(1, 16 * 16, dtype=torch.int32)
    with pytest.raises(ValueError, match="bands path"):
        _forward(pos, tri, 16, 16, False, mode="atomic", ids=ids)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"out": torch.empty(1, 64, dtype=torch.int64)}, ValueError, "rasterize_ids.*out must be an int32"),
        ({"out": torch.empty(2, 64, dtype=torch.int32)}, ValueError, "rasterize_ids.*out"),
        ({"out": [0] * 64}, ValueError, "rasterize_ids.*out.*list"),
        ({"workspace": {}}, TypeError, "rasterize_ids.*workspace"),
    ],
)
def test_ids_bad_outputs(kwargs, err, match):
    pos, tri = _random_scene(torch.float32, batch=1, seed=0)
    with pytest.raises(err, match=match):
        _rasterize_ids(pos, tri, (8, 8), **kwargs)


def test_ids_bad_inputs():
    pos, tri = _random_scene(torch.float32, batch=1, seed=0)
    with pytest.raises(ValueError, match="rasterize_ids.*out of range"):
        _rasterize_ids(pos, tri + 100, (8, 8))
    bad = pos.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="rasterize_ids.*NaN"):
        _rasterize_ids(bad, tri, (8, 8))
    with pytest.raises(ValueError, match="rasterize_ids"):
        _rasterize_ids(pos, tri, (0, 8))
    with pytest.raises(ValueError, match="rasterize_ids.*tri must be int32"):
        _rasterize_ids(pos, tri.float(), (8, 8))
    with pytest.raises(TypeError, match="rasterize_ids.*tri"):
        _rasterize_ids(pos, tri.tolist(), (8, 8))
