"""Tests for lumigrad.ops.antialias: reference agreement, gradcheck, visibility gradients vs supersampling."""
import math


import pytest
from conftest import TEST_DATA
import torch

from lumigrad.ops.rasterize import rasterize

from lumigrad.ops._antialias_ref import antialias_ref, opposite_vertices_ref
from lumigrad.ops.antialias import AntialiasTopology, antialias, prepare_topology
from lumigrad.testing.gradcheck import finite_difference, supersampled_coverage

DTYPES = [torch.float32, torch.float64]
NEAR, FAR, FOCAL = 0.5, 10.0, 2.2


def _raster(pos, tri, res):
    """Rasterizer for these tests: the Warp kernel (it matches rasterize_ref; see test_rasterize)."""
    return rasterize(pos, tri, res)


def _clip(view):
    """Clip positions for view points (X right, Y up, depth d > 0) under a simple perspective camera."""
    X, Y, d = view.unbind(-1)
    z = (FAR + NEAR) / (FAR - NEAR) * d - 2 * FAR * NEAR / (FAR - NEAR)
    return torch.stack([FOCAL * X, FOCAL * Y, z, d], -1)


def _rot(a, b, c, dtype):
    k = torch.tensor([[0.0, -c, b], [c, 0.0, -a], [-b, a, 0.0]], dtype=dtype)
    return torch.linalg.matrix_exp(k)


def _octa_scene(dtype, weld=True):
    """Octahedron (apex towards the camera) in front of a quad covering the left part of the image.

    Returns clip ``pos [10, 4]``, ``tri [10, 3]`` and per-face values (1 octahedron, 0 quad).
    Vertices 0-3 are the silhouette, 4 the front apex, 5 the hidden back apex, 6-9 the quad.
    """
    v = torch.tensor([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 0, 1]], dtype=dtype)
    v = v @ _rot(0, 0, 0.5, dtype).T @ _rot(0.06, -0.05, 0, dtype).T * 1.2
    v = v + torch.tensor([0.05, 0.02, 3.2], dtype=dtype)
    quad = torch.tensor([[-3.0, -3.0, 5.0], [0.3, -3.2, 5.2], [0.4, 3.0, 5.1], [-3.0, 3.0, 5.0]], dtype=dtype)
    pos = _clip(torch.cat([v, quad]))
    faces = [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4], [1, 0, 5], [2, 1, 5], [3, 2, 5], [0, 3, 5]]
    faces += [[6, 7, 8], [6, 8, 9]]
    tri = torch.tensor(faces, dtype=torch.int32)
    if not weld:  # every face gets its own corners: all edges become boundaries
        pos = pos[tri.long().flatten()]
        tri = torch.arange(3 * len(faces), dtype=torch.int32).view(-1, 3)
    values = torch.tensor([1.0] * 8 + [0.0, 0.0], dtype=dtype)
    return pos, tri, values


def _triangle_scene(dtype):
    """One large triangle in perspective (different w per vertex)."""
    ndc = torch.tensor([[-0.83, -0.69], [0.79, -0.86], [0.12, 0.84]], dtype=dtype)
    w = torch.tensor([1.5, 2.5, 2.0], dtype=dtype)
    pos = torch.stack([ndc[:, 0] * w, ndc[:, 1] * w, 0.5 * w - 1.0, w], -1)
    return pos, torch.tensor([[0, 1, 2]], dtype=torch.int32)


def _tiny_scene(dtype, batch=1):
    """Two overlapping triangles in perspective plus one sharing an edge, on a 9x11 image."""
    view = torch.tensor(
        [
            [-0.55, -0.50, 2.0],
            [0.62, -0.41, 2.6],
            [0.05, 0.63, 2.2],
            [-0.7, 0.31, 3.0],
            [-0.33, 0.12, 1.6],
            [0.47, -0.09, 1.5],
            [0.11, 0.37, 1.7],
        ],
        dtype=dtype,
    )
    pos = _clip(view)[None].repeat(batch, 1, 1)
    g = torch.Generator().manual_seed(5)
    pos[1:, :, :2] += 0.05 * torch.randn(batch - 1, 7, 2, generator=g, dtype=dtype)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]], dtype=torch.int32)
    rast, _ = _raster(pos, tri, (9, 11))
    color = torch.rand(batch, 9, 11, 2, generator=g, dtype=dtype)
    return color, rast, pos, tri


def _grads(fn, color, rast, pos, tri, cot, **kw):
    c = color.clone().requires_grad_(True)
    p = pos.clone().requires_grad_(True)
    out = fn(c, rast, p, tri, **kw)
    gc, gp = torch.autograd.grad(out, [c, p], cot)
    return out.detach(), gc, gp


def test_smoke_blends_only_at_the_silhouette():
    pos, tri = _triangle_scene(torch.float32)
    rast, _ = _raster(pos, tri, (16, 16))
    mask = (rast[..., 3:] > 0).float()
    out = antialias(mask, rast, pos, tri)
    assert out.shape == (1, 16, 16, 1) and out.dtype == torch.float32
    changed = (out != mask)[..., 0]
    assert changed.any()
    # Every changed pixel has a 4-neighbour with a different coverage.
    m = mask[0, ..., 0]
    pad = torch.nn.functional.pad(m[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    neigh_diff = (pad[1:-1, :-2] != m) | (pad[1:-1, 2:] != m) | (pad[:-2, 1:-1] != m) | (pad[2:, 1:-1] != m)
    assert not (changed[0] & ~neigh_diff).any()
    assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_matches_reference(dtype):
    pos, tri, _ = _octa_scene(dtype)
    pos = torch.stack([pos, pos * torch.tensor([1.04, 0.97, 1.0, 1.0], dtype=dtype)])
    rast, _ = _raster(pos, tri, (40, 48))
    color = torch.rand(2, 40, 48, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    cot = torch.randn(2, 40, 48, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    out, gc, gp = _grads(antialias, color, rast, pos, tri, cot)
    out_r, gc_r, gp_r = _grads(antialias_ref, color, rast, pos, tri, cot)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(out, out_r, **tol)
    torch.testing.assert_close(gc, gc_r, **tol)
    torch.testing.assert_close(gp, gp_r, **tol)
    assert (out != color).any() and gp.abs().sum() > 0


def test_gradcheck_kernel_and_reference():
    color, rast, pos, tri = _tiny_scene(torch.float64, batch=2)
    out = antialias(color, rast, pos, tri)
    # The scene exercises blends in both directions and the pos gradient.
    assert (out != color).sum() >= 10
    for fn in (antialias, antialias_ref):
        c = color.clone().requires_grad_(True)
        p = pos.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda c, p: fn(c, rast, p, tri), (c, p), eps=1e-6, atol=1e-6)


def test_gradcheck_broadcast_pos():
    color, rast, pos, tri = _tiny_scene(torch.float64, batch=1)
    color = torch.cat([color, color.flip(-1)])
    rast = torch.cat([rast, rast])
    p = pos[0].clone().requires_grad_(True)  # [V, 4] broadcast over B = 2
    c = color.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, p: antialias(c, rast, p, tri), (c, p), eps=1e-6, atol=1e-6)


def test_batched_equals_looped():
    color, rast, pos, tri = _tiny_scene(torch.float64, batch=3)
    cot = torch.randn_like(color)
    out, gc, gp = _grads(antialias, color, rast, pos, tri, cot)
    for b in range(3):
        o, c, p = _grads(antialias, color[b : b + 1], rast[b : b + 1], pos[b : b + 1], tri, cot[b : b + 1])
        torch.testing.assert_close(out[b : b + 1], o)
        torch.testing.assert_close(gc[b : b + 1], c)
        torch.testing.assert_close(gp[b : b + 1], p)


def test_pos_gradient_boost_scales_only_pos():
    color, rast, pos, tri = _tiny_scene(torch.float64)
    cot = torch.randn_like(color)
    out, gc, gp = _grads(antialias, color, rast, pos, tri, cot)
    out3, gc3, gp3 = _grads(antialias, color, rast, pos, tri, cot, pos_gradient_boost=3.0)
    _, _, gp3_ref = _grads(antialias_ref, color, rast, pos, tri, cot, pos_gradient_boost=3.0)
    assert gp.abs().sum() > 0
    torch.testing.assert_close(out3, out)
    torch.testing.assert_close(gc3, gc)
    torch.testing.assert_close(gp3, 3.0 * gp)
    torch.testing.assert_close(gp3_ref, gp3)


def test_topology_matches_reference_and_cache():
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.load(str(TEST_DATA / "open_shell.obj"), process=False, force="mesh")
    tri = torch.as_tensor(mesh.faces, dtype=torch.int64)
    topo = prepare_topology(tri, len(mesh.vertices))
    assert isinstance(topo, AntialiasTopology) and topo.opposite.dtype == torch.int32
    assert torch.equal(topo.opposite, opposite_vertices_ref(tri))
    assert (topo.opposite == -1).any() and (topo.opposite >= 0).any()  # the shell has boundaries
    # Boundary, non-manifold (3 faces on edge 0-1) and degenerate faces all give -1.
    tri2 = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4], [2, 1, 5], [5, 5, 2]])
    opp = prepare_topology(tri2, 6).opposite
    assert torch.equal(opp, opposite_vertices_ref(tri2))
    assert opp[0].tolist() == [5, -1, -1] and opp[3].tolist() == [-1, -1, 0] and opp[4].tolist() == [-1, -1, -1]
    # A cached topology gives the same result as building it inside the call.
    color, rast, pos, t = _tiny_scene(torch.float64)
    cached = antialias(color, rast, pos, t, topology=prepare_topology(t, pos.shape[-2]))
    torch.testing.assert_close(cached, antialias(color, rast, pos, t))


def test_interior_edges_do_not_blend():
    """Edges between front-facing triangles of one surface are not silhouettes; unwelded, they are."""
    res = (48, 48)
    for weld in (True, False):
        pos, tri, _ = _octa_scene(torch.float64, weld=weld)
        rast, _ = _raster(pos, tri, res)
        ids = rast[..., 3].long()
        face_color = torch.rand(len(tri), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        color = torch.cat([torch.zeros(1, 3, dtype=torch.float64), face_color])[ids]
        out = antialias(color, rast, pos, tri)
        octa = (ids >= 1) & (ids <= 8)
        pad = torch.nn.functional.pad(octa[:, None].float(), (1, 1, 1, 1))[:, 0] > 0
        interior = octa & pad[:, 1:-1, :-2] & pad[:, 1:-1, 2:] & pad[:, :-2, 1:-1] & pad[:, 2:, 1:-1]
        changed = (out != color).any(-1)
        # Face ids differ inside the octahedron, so interior pairs are analysed.
        assert (ids[interior] != ids[interior].flatten()[0]).any()
        if weld:
            assert not changed[interior].any()
            assert changed[~interior].any()
        else:
            assert changed[interior].any()


def test_pos_gradient_only_on_silhouette_vertices():
    pos, tri, values = _octa_scene(torch.float64)
    rast, _ = _raster(pos, tri, (48, 48))
    cover = torch.cat([torch.zeros(1, dtype=torch.float64), values])[rast[..., 3].long()][..., None]
    p = pos.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(antialias(cover, rast, p, tri).sum(), p)
    assert (g[:4, [0, 1, 3]].abs() > 1.0).all()  # silhouette vertices: x, y, w
    assert (g[:, 2] == 0).all()  # z never
    assert (g[4:] == 0).all()  # front apex (interior), hidden back apex, occluded quad


def test_vertex_behind_camera_matches_reference():
    # Triangle 1 crosses the camera plane: it is rasterized but never blends.
    pos = torch.tensor(
        [[-0.6, -0.6, 0.0, 1.0], [0.7, -0.5, 0.0, 1.0], [0.1, 0.7, 0.0, 1.0], [0.5, 0.8, 0.5, -0.5]],
        dtype=torch.float64,
    )
    tri = torch.tensor([[0, 1, 2], [0, 1, 3]], dtype=torch.int32)
    rast, _ = _raster(pos, tri, (16, 16))
    assert (rast[..., 3] == 2).any()
    color = torch.rand(1, 16, 16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cot = torch.randn_like(color)
    out, gc, gp = _grads(antialias, color, rast, pos, tri, cot)
    out_r, gc_r, gp_r = _grads(antialias_ref, color, rast, pos, tri, cot)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(gp, gp_r)
    assert torch.isfinite(gp).all() and (gp[3] == 0).all()


def test_empty_image_is_identity():
    pos, tri = _triangle_scene(torch.float32)
    rast = torch.zeros(1, 8, 8, 4)
    color = torch.rand(1, 8, 8, 3)
    p = pos.clone().requires_grad_(True)
    out = antialias(color, rast, p, tri)
    assert torch.equal(out, color)
    out.sum().backward()
    assert (p.grad == 0).all()


def _visible_sum_fd(pos, tri, values, res, factor, eps, idx):
    def f(q):
        return supersampled_coverage(_raster, q, tri, res, factor, face_values=values, tile=256 // factor).sum()

    return finite_difference(f, pos, eps, idx)


def _aa_sum_grad(pos, tri, values, res):
    p = pos.clone().requires_grad_(True)
    rast, _ = _raster(p, tri, res)
    table = torch.cat([torch.zeros(1, dtype=pos.dtype), values])
    cover = table[rast[..., 3].long()][..., None]
    (g,) = torch.autograd.grad(antialias(cover, rast, p, tri).sum(), p)
    return g


def _check_visibility(pos, tri, values, verts, res, factor, eps, comps=(0, 1, 3), tol=0.05):
    idx = [4 * v + c for v in verts for c in comps]
    g = _aa_sum_grad(pos, tri, values, res).flatten()[idx]
    fd = _visible_sum_fd(pos, tri, values, res, factor, eps, idx)
    err = float((g - fd).norm() / fd.norm())
    assert err < tol, f"relative error {err:.3f}\nantialias {g.numpy().round(2)}\nFD        {fd.numpy().round(2)}"


def test_visibility_gradient_triangle_vs_supersampled_fd():
    """d(sum of antialiased coverage)/d(pos) vs FD of 8x8-supersampled coverage (silhouette on background)."""
    pos, tri = _triangle_scene(torch.float64)
    _check_visibility(pos, tri, torch.ones(1, dtype=torch.float64), [0, 1, 2], (64, 64), factor=8, eps=0.05)


def test_visibility_gradient_occlusion_vs_supersampled_fd():
    """Octahedron partly over a quad (occlusion edges) and partly over background; its visible area."""
    pos, tri, values = _octa_scene(torch.float64)
    ids = _raster(pos, tri, (64, 64))[0][0, ..., 3]
    octa, quad, empty = (ids >= 1) & (ids <= 8), ids >= 9, ids == 0
    for other in (quad, empty):  # the silhouette runs over both the quad and the background
        assert ((octa[:, :-1] & other[:, 1:]) | (other[:, :-1] & octa[:, 1:])).sum() >= 5
    # x and y only to keep it quick (w is covered by the triangle and the slow test).
    _check_visibility(pos, tri, values, [0, 1, 2, 3], (64, 64), factor=8, eps=0.05, comps=(0, 1))


def test_visibility_gradient_16x_supersampling():
    """16x16 supersampling; every vertex that could matter (apexes must get ~0 both ways)."""
    pos, tri, values = _octa_scene(torch.float64)
    _check_visibility(pos, tri, values, range(6), (64, 64), factor=16, eps=0.03)


def _bad_inputs():
    color, rast, pos, tri = _tiny_scene(torch.float32)
    F = tri.shape[0]
    bad_ids = rast.clone()
    bad_ids[0, 0, 0, 3] = F + 1
    nan_rast = rast.clone()
    nan_rast[0, 1, 1, 0] = float("nan")
    inf_pos = pos.clone()
    inf_pos[0, 0, 0] = float("inf")
    nan_color = color.clone()
    nan_color[0, 0, 0, 0] = float("nan")
    other_topo = prepare_topology(torch.tensor([[0, 1, 2]]), 3)
    V = pos.shape[-2]
    out_of_range_topo = AntialiasTopology(opposite=torch.full((F, 3), V, dtype=torch.int32), num_verts=V)
    int64_topo = AntialiasTopology(opposite=torch.full((F, 3), -1), num_verts=V)
    return [
        (TypeError, (color.numpy(), rast, pos, tri), {}),
        (ValueError, (color.int(), rast, pos, tri), {}),
        (ValueError, (color[0], rast, pos, tri), {}),
        (ValueError, (color, rast[..., :3], pos, tri), {}),
        (ValueError, (color, rast[:, :-1], pos, tri), {}),
        (ValueError, (color, rast.double(), pos, tri), {}),
        (ValueError, (color, rast, pos[..., :3], tri), {}),
        (ValueError, (color, rast, pos.repeat(2, 1, 1), tri), {}),
        (ValueError, (color[:, :0], rast[:, :0], pos, tri), {}),
        (ValueError, (color, rast, pos, tri.float()), {}),
        (ValueError, (color, rast, pos, tri + 7), {}),
        (ValueError, (color, rast, pos, tri - 1), {}),
        (ValueError, (color, rast, pos, tri[:0]), {}),
        (ValueError, (color, rast, pos, tri[:, :2]), {}),
        (TypeError, (color, rast, pos, tri.tolist()), {}),
        (ValueError, (color, bad_ids, pos, tri), {}),
        (ValueError, (color, nan_rast, pos, tri), {}),
        (ValueError, (color, rast, inf_pos, tri), {}),
        (ValueError, (nan_color, rast, pos, tri), {}),
        (TypeError, (color, rast, pos, tri), {"topology": "cached"}),
        (ValueError, (color, rast, pos, tri), {"topology": other_topo}),
        (ValueError, (color, rast, pos, tri), {"topology": out_of_range_topo}),
        (ValueError, (color, rast, pos, tri), {"topology": int64_topo}),
        (ValueError, (color, rast, pos, tri), {"pos_gradient_boost": math.nan}),
        (TypeError, (color, rast, pos, tri), {"pos_gradient_boost": "2"}),
    ]


@pytest.mark.parametrize("case", range(25))
def test_bad_inputs_raise(case):
    cases = _bad_inputs()
    assert len(cases) == 25
    exc, args, kw = cases[case]
    with pytest.raises(exc, match=r"^antialias\(\): "):
        antialias(*args, **kw)


def test_prepare_topology_bad_inputs():
    with pytest.raises(TypeError, match="num_verts"):
        prepare_topology(torch.tensor([[0, 1, 2]]), 3.0)
    with pytest.raises(ValueError, match="prepare_topology"):
        prepare_topology(torch.tensor([[0, 1, 3]]), 3)
    with pytest.raises(ValueError, match="prepare_topology"):
        prepare_topology(torch.tensor([[0.0, 1.0, 2.0]]), 3)


def test_topology_cache_follows_identity_and_contents():
    from lumigrad.ops.antialias import _build_topology, cached_topology

    tri = torch.tensor([[0, 1, 2], [2, 1, 3]], dtype=torch.int32)
    first = cached_topology(tri, 4)
    assert cached_topology(tri, 4) is first  # same tensor, unchanged: cached
    assert cached_topology(tri.clone(), 4) is not first  # another tensor: built anew
    tri[1] = torch.tensor([0, 2, 3], dtype=torch.int32)  # an in-place edit
    again = cached_topology(tri, 4)
    assert again is not first
    assert torch.equal(again.neighbor, _build_topology(tri, 4).neighbor)
    tri.numpy()[1] = [2, 1, 3]  # an edit torch does not see (no version bump)
    third = cached_topology(tri, 4)
    assert third is not again and torch.equal(third.neighbor, first.neighbor)
