"""lumigrad.ops._bvh: BVH build/refit invariants, queries vs the brute-force reference and vs Warp's wp.Mesh."""
import pytest
import torch
import warp as wp

from lumigrad._runtime.launch import _ensure_init, launch, to_warp
from lumigrad.geometry.primitives import icosphere, plane
from lumigrad.ops import _bvh_kernels as _bk
from lumigrad.ops import _trace_kernels as _tk
from lumigrad.ops._bvh import BVHData
from lumigrad.ops._bvh_ref import anyhit_ref, check_tree_ref, closest_ref
from lumigrad.ops.trace import TraceBVH, intersect, occluded


def _scene(seed=0):
    """A small icosphere over a floor plane, plus a soup of random triangles."""
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(2)
    pv, pf = plane(6.0)
    pv = pv - torch.tensor([0.0, 1.0, 0.0])
    sv = torch.randn(60, 3, generator=g) * 1.5
    verts = torch.cat([v.float(), pv.float(), sv])
    faces = torch.cat([f, pf + v.shape[0], torch.arange(60).reshape(20, 3) + v.shape[0] + pv.shape[0]]).int()
    return verts.contiguous(), faces.contiguous()


def _rays(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g) * 2.0
    d = torch.randn(n, 3, generator=g) * torch.rand(n, 1, generator=g) * 3.0  # not unit length
    return o, d


def _query(bvh: BVHData, o, d, tmax):
    r = o.shape[0]
    face = torch.empty(r, dtype=torch.int32)
    t = torch.empty(r)
    hit = torch.empty(r, dtype=torch.int32)
    args = bvh.args()
    launch(_tk.trace_closest, r, [*args, to_warp(o, wp.vec3), to_warp(d, wp.vec3), to_warp(tmax), to_warp(face),
                                  to_warp(t)], "cpu")
    launch(_tk.trace_occluded, r, [*args, to_warp(o, wp.vec3), to_warp(d, wp.vec3), to_warp(tmax), to_warp(hit)],
           "cpu")
    return face, t, hit.bool()


def _check_against_ref(v, f, o, d, tmax, face, t, hit):
    face_ref, t_ref = closest_ref(v, f, o, d, tmax)
    same = face == face_ref
    assert same.float().mean() >= 0.999
    # a disagreement must be a near-tie: both triangles hit at (almost) the same distance
    for i in torch.nonzero(~same).flatten().tolist():
        assert face[i] >= 0 and face_ref[i] >= 0, f"ray {i}: a hit against a miss ({face[i]} vs {face_ref[i]})"
        assert abs(float(t[i]) - float(t_ref[i])) <= 1e-4 * abs(float(t_ref[i])) + 1e-6
    torch.testing.assert_close(t, t_ref, rtol=1e-5, atol=1e-6)
    assert (hit == anyhit_ref(v, f, o, d, tmax)).float().mean() >= 0.999


@pytest.mark.parametrize("leaf_size", [1, 4, 8])
def test_queries_match_reference(leaf_size):
    _ensure_init()
    v, f = _scene()
    bvh = BVHData(v, f.reshape(-1), leaf_size=leaf_size)
    check_tree_ref(bvh, v, f, _bk.STACK_SIZE)
    o, d = _rays(3000, seed=leaf_size)
    tmax = torch.rand(3000, generator=torch.Generator().manual_seed(9)) * 3.0
    tmax[::3] = 3.0e38  # unbounded
    face, t, hit = _query(bvh, o, d, tmax)
    assert (face >= 0).sum() > 500 and (face < 0).sum() > 500 and hit.any() and (~hit).any()
    _check_against_ref(v, f, o, d, tmax, face, t, hit)


def test_refit_then_query():
    _ensure_init()
    v, f = _scene(seed=1)
    bvh = BVHData(v.clone(), f.reshape(-1))
    g = torch.Generator().manual_seed(3)
    v2 = v * torch.tensor([1.5, 0.5, 1.0]) + torch.randn(v.shape, generator=g) * 0.3 + 0.4  # topology fixed
    bvh.points.copy_(v2)
    bvh.refit()
    check_tree_ref(bvh, v2, f, _bk.STACK_SIZE)
    o, d = _rays(2000, seed=4)
    tmax = torch.full((2000,), 3.0e38)
    face, t, hit = _query(bvh, o, d, tmax)
    _check_against_ref(v2, f, o, d, tmax, face, t, hit)
    # the public path: TraceBVH.refit
    tb = TraceBVH(v, f)
    tb.refit(v2)
    assert torch.equal(intersect(tb, o, d).face, face)
    assert torch.equal(occluded(tb, o, d, 5.0), _query(bvh, o, d, torch.full((2000,), 5.0))[2])


def test_degenerate_and_duplicate_triangles():
    _ensure_init()
    # zero-area triangles (a point, a segment) are never hit; 300 copies of one triangle (identical Morton codes)
    # still give a shallow, valid tree
    tri = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pts = torch.tensor([[0.2, 0.2, 1.0], [0.2, 0.2, 1.0], [0.2, 0.2, 1.0], [0.0, 0.0, 2.0], [1.0, 1.0, 2.0],
                        [0.5, 0.5, 2.0]])
    v = torch.cat([tri.repeat(300, 1), pts])
    f = torch.arange(v.shape[0], dtype=torch.int32).reshape(-1, 3)
    bvh = BVHData(v, f.reshape(-1), leaf_size=2)
    check_tree_ref(bvh, v, f, _bk.STACK_SIZE)
    o = torch.tensor([[0.2, 0.2, 5.0], [0.5, 0.5, 5.0], [0.25, 0.25, -1.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, 1.0]])
    tmax = torch.full((3,), 100.0)
    face, t, hit = _query(bvh, o, d, tmax)
    assert (face[:2] < 300).all() and (face[:2] >= 0).all()  # the copies, never the point or the segment
    torch.testing.assert_close(t, torch.tensor([5.0, 2.5, 1.0]))
    assert hit.all()


def test_parallel_rays_and_axis_directions():
    _ensure_init()
    v = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0],
                      [0.0, 1.0, 1.0]])
    f = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    bvh = BVHData(v, f.reshape(-1))
    o = torch.tensor([[-1.0, 0.5, 0.0],  # in the plane of face 0, parallel to it: no hit
                      [-1.0, 0.5, 0.5],  # parallel, between the faces
                      [0.3, 0.3, 3.0],  # straight down (two zero components): face 1 first
                      [0.3, 0.3, 0.5],  # from between the faces, upward
                      [0.5, 0.5, -1.0]])  # upward through both
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.5]])
    tmax = torch.full((5,), 1.0e30)
    face, t, hit = _query(bvh, o, d, tmax)
    assert face.tolist() == [-1, -1, 1, 1, 0]
    torch.testing.assert_close(t, torch.tensor([1e30, 1e30, 2.0, 0.5, 2.0]))
    assert hit.tolist() == [False, False, True, True, True]


def test_rays_starting_on_a_surface_and_tmax():
    _ensure_init()
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 2.0],
                      [0.0, 1.0, 2.0]])
    f = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    bvh = BVHData(v, f.reshape(-1))
    o = torch.tensor([[0.25, 0.25, 0.0]] * 2 + [[0.25, 0.25, 1.0]] * 3)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    tmax = torch.tensor([10.0, 10.0, 1.0, 1.0 + 1e-6, 0.5])
    face, t, hit = _query(bvh, o, d, tmax)
    # closest accepts t = 0 (the surface the ray starts on, as wp.mesh_query_ray); any hit needs t > 0
    assert face.tolist() == [0, 0, -1, 1, -1]
    torch.testing.assert_close(t, torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5]))  # tmax on a miss; tmax is exclusive
    assert hit.tolist() == [True, False, False, True, False]  # up from face 0: face 1 at t = 2 < 10


def test_one_and_zero_triangles():
    _ensure_init()
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    o, d = torch.tensor([[0.2, 0.2, 1.0], [2.0, 2.0, 1.0]]), torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    tmax = torch.full((2,), 10.0)
    one = BVHData(v, torch.tensor([0, 1, 2], dtype=torch.int32))
    face, t, hit = _query(one, o, d, tmax)
    assert face.tolist() == [0, -1] and hit.tolist() == [True, False]
    none = BVHData(v, torch.zeros(0, dtype=torch.int32))
    face, t, hit = _query(none, o, d, tmax)
    assert face.tolist() == [-1, -1] and t.tolist() == [10.0, 10.0] and not hit.any()


def test_bad_inputs_raise_before_launch():
    v, f = icosphere(0)
    with pytest.raises(ValueError, match="leaf_size"):
        BVHData(v.float(), f.reshape(-1), leaf_size=9)
    bvh = TraceBVH(v, f)
    with pytest.raises(ValueError, match="refit"):
        bvh.refit(torch.full_like(v, float("nan")))
    with pytest.raises(ValueError, match="intersect"):
        intersect(bvh, torch.zeros(3, 3), torch.ones(3, 3), torch.ones(4))
    with pytest.raises(ValueError, match="occluded"):
        occluded(bvh, torch.zeros(3, 2), torch.ones(3, 2))


@wp.kernel
def _warp_queries(mesh: wp.uint64, o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
                  tmax: wp.array(dtype=float), face: wp.array(dtype=wp.int32), t: wp.array(dtype=float),
                  hit: wp.array(dtype=wp.int32)):
    i = wp.tid()
    q = wp.mesh_query_ray(mesh, o[i], d[i], tmax[i])
    face[i] = wp.where(q.result, q.face, -1)
    t[i] = wp.where(q.result, q.t, tmax[i])
    hit[i] = wp.where(wp.mesh_query_ray_anyhit(mesh, o[i], d[i], tmax[i]), 1, 0)


def test_matches_warp_mesh_query():
    """Same faces as wp.mesh_query_ray on the bench scene's geometry (camera-like and random rays); 20k
    triangles, so that the builder's top levels bin a strided sample."""
    _ensure_init()
    v, f = icosphere(5)
    pv, pf = plane(6.0)
    f = torch.cat([f, pf + v.shape[0]]).int().contiguous()
    v = torch.cat([v.float(), pv.float() - torch.tensor([0.0, 1.0, 0.0])]).contiguous()
    g = torch.Generator().manual_seed(5)
    n = 20000
    eye = torch.tensor([0.0, 1.5, 4.0])
    tgt = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 3.0, 2.0]) - torch.tensor([2.0, 1.5, 1.0])
    o = torch.cat([eye.expand(n, 3), torch.randn(n, 3, generator=g) * 2.0]).contiguous()
    d = torch.cat([tgt - eye, torch.randn(n, 3, generator=g)]).contiguous()
    tmax = torch.full((2 * n,), 3.0e38)
    tmax[1::2] = torch.rand(n, generator=g) * 4.0
    bvh = BVHData(v, f.reshape(-1))
    assert f.shape[0] > 2 * _bk._SAH_SAMPLES
    check_tree_ref(bvh, v, f, _bk.STACK_SIZE)
    face, t, hit = _query(bvh, o, d, tmax)
    mesh = wp.Mesh(points=wp.from_torch(v, dtype=wp.vec3), indices=wp.from_torch(f.reshape(-1)), bvh_constructor="sah")
    wf, wt, wh = torch.empty(2 * n, dtype=torch.int32), torch.empty(2 * n), torch.empty(2 * n, dtype=torch.int32)
    wp.launch(_warp_queries, 2 * n, [mesh.id, *[wp.from_torch(x, dtype=wp.vec3) for x in (o, d)],
                                     *[wp.from_torch(x) for x in (tmax, wf, wt, wh)]], device="cpu")
    assert (wf >= 0).sum() > n // 2
    same = face == wf
    assert same.float().mean() >= 0.9999
    both = same & (wf >= 0)
    # t: 1e-5 relative, plus float32 rounding of the coordinates (scene size ~6) for hits close to the origin
    torch.testing.assert_close(t[both], wt[both], rtol=1e-5, atol=2e-6)
    for i in torch.nonzero(~same).flatten().tolist():  # near-ties only
        assert face[i] >= 0 and wf[i] >= 0 and abs(float(t[i]) - float(wt[i])) <= 1e-5 * float(wt[i]) + 2e-6
    assert (hit == wh.bool()).float().mean() >= 0.9999


def test_tree_check_catches_a_bad_box():
    """The invariant check used above can fail: a leaf box shrunk below its triangles is reported."""
    _ensure_init()
    v, f = _scene(seed=2)
    bvh = BVHData(v, f.reshape(-1))
    check_tree_ref(bvh, v, f, _bk.STACK_SIZE)
    pos = int(bvh.leaf_pos[0])
    bvh.nodes[pos + 1] = bvh.nodes[pos]  # hi = lo
    with pytest.raises(AssertionError, match="box"):
        check_tree_ref(bvh, v, f, _bk.STACK_SIZE)


def test_rays_through_shared_edges_and_vertices_of_a_closed_mesh_never_slip_through():
    # An exact float32 edge test can let a ray through a shared edge miss both triangles; the slack may not.
    v, f = icosphere(4)
    v = v * torch.tensor([1.3, 0.8, 1.1])  # convex, edges at awkward float positions
    bvh = TraceBVH(v, f)
    fl = f.long()
    fn = torch.linalg.cross(v[fl[:, 1]] - v[fl[:, 0]], v[fl[:, 2]] - v[fl[:, 0]], dim=-1)
    fn = fn / fn.norm(dim=-1, keepdim=True)
    # each undirected edge with its two faces
    he = torch.cat([fl[:, [0, 1]], fl[:, [1, 2]], fl[:, [2, 0]]])
    face_of = torch.arange(f.shape[0]).repeat(3)
    key = torch.minimum(he[:, 0], he[:, 1]) * v.shape[0] + torch.maximum(he[:, 0], he[:, 1])
    order = torch.argsort(key)
    a, b = order[0::2], order[1::2]
    assert bool((key[a] == key[b]).all())  # closed mesh: two faces per edge
    g = torch.Generator().manual_seed(5)
    pts, outward = [], []
    for s_ in (0.5, 0.3, 0.07):  # points on every edge
        pts.append(v[he[a, 0]] * (1 - s_) + v[he[a, 1]] * s_)
        outward.append(fn[face_of[a]] + fn[face_of[b]])
    pts, outward = torch.cat(pts), torch.cat(outward)
    outward = outward / outward.norm(dim=-1, keepdim=True)
    # origins in front of both faces of the edge (not grazing), a little off the bisector
    o = pts + 2.0 * (outward + 0.1 * torch.randn(pts.shape, generator=g))
    hits = intersect(bvh, o, pts - o)
    assert bool((hits.face >= 0).all()), f"{int((hits.face < 0).sum())} of {pts.shape[0]} rays slipped through"
    # from inside towards the same points: an enclosed point sees the mesh in every direction
    inner = torch.zeros_like(pts) + torch.tensor([0.05, -0.03, 0.02])
    assert bool(occluded(bvh, inner, pts - inner, 1.5).all())


def test_per_level_refit_equals_the_serial_one():
    # CUDA refits the inner boxes one launch per level; the CPU runs them serially. Same boxes either way.
    _ensure_init()
    v, f = _scene()
    bvh = BVHData(v, f.reshape(-1))
    assert len(bvh.levels) > 3
    ref = bvh.nodes.clone()
    inner = bvh.kids.long().reshape(-1) >= 0  # child slots filled from inner nodes (leaves come from bvh_leaves)
    bvh.nodes.view(-1, 2, 2, 3)[inner.view(-1, 2)] = float("nan")
    assert int(torch.isnan(bvh.nodes).sum()) == 6 * int(inner.sum()) > 0
    bvh._refit_inner(serial=False)
    torch.testing.assert_close(bvh.nodes, ref, rtol=0, atol=0)
