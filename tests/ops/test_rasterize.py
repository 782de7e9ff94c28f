"""Tests for lumigrad.ops.rasterize: validation, reference agreement, fill rule, gradients, batching."""
import math


import pytest
from conftest import SHARED_DATA
import torch

from lumigrad.ops._rasterize_ref import rasterize_ref
from lumigrad.ops.rasterize import Rasterized, _backward, _forward, rasterize

DTYPES = [torch.float32, torch.float64]
# u, v, z tolerance vs the reference (kernel and reference round differently).
ATOL = {torch.float32: 2e-5, torch.float64: 1e-10}


def _random_scene(dtype, batch=2, nv=40, nf=30, seed=0, behind=False):
    """Random overlapping triangles, some back-facing, some crossing the near/far planes."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, nv, 4, dtype=dtype, generator=g) * 0.7
    pos[..., 3] = 0.6 + torch.rand(batch, nv, dtype=dtype, generator=g)
    pos[..., 2] = (torch.rand(batch, nv, dtype=dtype, generator=g) * 2.6 - 1.3) * pos[..., 3]
    if behind:  # some vertices behind the camera: triangles crossing w = 0
        pos[:, : nv // 4, 3] *= -1
    # Distinct corners: the float32 reference draws garbage for a repeated vertex (see
    # test_degenerate_triangles_draw_nothing).
    tri = torch.stack([torch.randperm(nv, generator=g)[:3] for _ in range(nf)]).int()
    return pos, tri


def _icosphere(level, dtype):
    """Unit icosphere (trimesh) seen by a 45 degree OpenGL camera at distance 3, in clip space."""
    trimesh = pytest.importorskip("trimesh")
    m = trimesh.creation.icosphere(subdivisions=level)
    v = torch.tensor(m.vertices, dtype=dtype)
    f = torch.tensor(m.faces, dtype=torch.int32)
    t, n, fa = 1.0 / math.tan(math.radians(22.5)), 0.1, 10.0
    proj = torch.tensor(
        [[t, 0, 0, 0], [0, t, 0, 0], [0, 0, -(fa + n) / (fa - n), -2 * fa * n / (fa - n)], [0, 0, -1, 0]], dtype=dtype
    )
    vh = torch.cat([v + torch.tensor([0.1, -0.2, -3.0], dtype=dtype), torch.ones(len(v), 1, dtype=dtype)], 1)
    return (vh @ proj.T)[None], f


def _assert_matches_ref(pos, tri, res, dtype):
    rast, db = rasterize(pos, tri, res)
    rast_r, db_r = rasterize_ref(pos, tri, res)
    assert torch.equal(rast[..., 3], rast_r[..., 3]), "coverage / triangle ids differ from the reference"
    torch.testing.assert_close(rast[..., :3], rast_r[..., :3], atol=ATOL[dtype], rtol=0)
    torch.testing.assert_close(db, db_r, atol=ATOL[dtype] * 10, rtol=1e-5)


# ---------------------------------------------------------------- smoke and shapes


def test_smoke():
    pos = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    out = rasterize(pos, tri, (8, 8))
    assert isinstance(out, Rasterized)
    assert out.rast.shape == (1, 8, 8, 4) and out.rast_db.shape == (1, 8, 8, 4)
    assert out.rast.dtype == torch.float32
    # Centre pixel is inside, with barycentrics summing to <= 1; corners are empty.
    assert out.rast[0, 4, 4, 3] == 1 and 0 < out.rast[0, 4, 4, :2].sum() < 1
    assert torch.equal(out.rast[0, 0, 0], torch.zeros(4))
    # Row 0 is the top: the apex (y = +0.5) is in the upper half of the image.
    rows = (out.rast[0, ..., 3] > 0).any(1).nonzero().flatten()
    assert rows.min() >= 2 and rows.max() <= 5


def test_shapes_and_options():
    pos, tri = _random_scene(torch.float32, batch=3)
    rast, db = rasterize(pos, tri.long(), (10, 12), grad_db=False)
    assert rast.shape == (3, 10, 12, 4) and db.shape == (3, 10, 12, 0)
    rast1, db1 = rasterize(pos[1], tri, (10, 12))
    assert rast1.shape == (1, 10, 12, 4) and db1.shape == (1, 10, 12, 4)
    assert torch.equal(rast1[0], rast[1])
    # Non-contiguous pos gives the same result.
    wide = torch.cat([pos, pos], -1)[..., ::2]
    assert not wide.is_contiguous()
    assert torch.equal(rasterize(wide, tri, (10, 12)).rast, rasterize(wide.contiguous(), tri, (10, 12)).rast)


# ---------------------------------------------------------------- bad inputs

_POS = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
_TRI = torch.tensor([[0, 1, 2]], dtype=torch.int32)


@pytest.mark.parametrize(
    "pos, tri, res, kwargs, err, match",
    [
        (_POS.tolist(), _TRI, (4, 4), {}, TypeError, "pos must be a torch.Tensor"),
        (_POS.int(), _TRI, (4, 4), {}, ValueError, "pos must be"),
        (_POS[:, :3], _TRI, (4, 4), {}, ValueError, r"pos must be .*got float32 \[3, 3\]"),
        (_POS[None, None], _TRI, (4, 4), {}, ValueError, "pos must be"),
        (_POS[None][:0], _TRI, (4, 4), {}, ValueError, "batch size 0"),
        (_POS.clone().fill_(float("nan")), _TRI, (4, 4), {}, ValueError, "NaN or inf"),
        (torch.cat([_POS[:2], torch.tensor([[0.0, float("inf"), 0, 1]])]), _TRI, (4, 4), {}, ValueError, "NaN or inf"),
        (_POS, _TRI.tolist(), (4, 4), {}, TypeError, "tri must be"),
        (_POS, _TRI.float(), (4, 4), {}, ValueError, r"tri must be int32 \[F, 3\], got float32 \[1, 3\]"),
        (_POS, _TRI[:, :2], (4, 4), {}, ValueError, "tri must be int32"),
        (_POS, _TRI[:0], (4, 4), {}, ValueError, "empty"),
        (_POS, -_TRI, (4, 4), {}, ValueError, "negative"),
        (_POS, _TRI + 1, (4, 4), {}, ValueError, "out of range"),
        (_POS, _TRI, (0, 4), {}, ValueError, "resolution"),
        (_POS, _TRI, (4, -1), {}, ValueError, "resolution"),
        (_POS, _TRI, (4.5, 4), {}, ValueError, "resolution"),
        (_POS, _TRI, (4,), {}, ValueError, "resolution"),
        (_POS, _TRI, None, {}, ValueError, "resolution"),
        (_POS, _TRI, (4, 4), {"grad_db": 1}, TypeError, "grad_db"),
    ],
)
def test_bad_inputs(pos, tri, res, kwargs, err, match):
    with pytest.raises(err, match=match):
        rasterize(pos, tri, res, **kwargs)


def test_bad_device():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA for a device mismatch")
    with pytest.raises(ValueError, match="device"):
        rasterize(_POS.cuda(), _TRI, (4, 4))


# ---------------------------------------------------------------- reference agreement


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed, behind", [(0, False), (1, False), (2, True), (3, True)])
def test_matches_reference_random(dtype, seed, behind):
    pos, tri = _random_scene(dtype, seed=seed, behind=behind)
    _assert_matches_ref(pos, tri, (37, 45), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_icosphere(dtype):
    # Closed mesh: front and back faces overlap, shared edges everywhere; 50 rows span 4 bands.
    pos, tri = _icosphere(2, dtype)
    _assert_matches_ref(pos, tri, (50, 61), dtype)


def test_matches_reference_real_mesh():
    trimesh = pytest.importorskip("trimesh")
    path = str(SHARED_DATA / "suzanne" / "suzanne.obj")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception:  # noqa: BLE001 - data is optional
        pytest.skip(f"{path} not available")
    v = torch.tensor(mesh.vertices, dtype=torch.float32)
    v = (v - v.mean(0)) / v.abs().max()
    pos = torch.cat([v[:, :2] * 0.8, v[:, 2:] * 0.5, torch.ones(len(v), 1)], 1)
    tri = torch.tensor(mesh.faces, dtype=torch.int64)
    _assert_matches_ref(pos, tri, (40, 48), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_atomic_path_equals_band_path(dtype):
    # The CUDA algorithm (atomics, one launch per pass) runs sequentially on CPU: it must agree bitwise.
    pos, tri = _random_scene(dtype, batch=2, seed=5, behind=True)
    a = _forward(pos, tri, 33, 40, True, mode="bands")
    b = _forward(pos, tri, 33, 40, True, mode="atomic")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_small_triangles(dtype):
    # Triangles of a few pixels and less: the band path tests boxes of <= _SMALL_BOX pixels
    # pixel by pixel and larger ones by row spans; both must agree with the reference and,
    # bitwise, with the atomic path (which tests every pixel of every box). 45 rows: 3 bands.
    from lumigrad.ops._rasterize_kernels import _SMALL_BOX
    pos, tri = _icosphere(3, dtype)
    _assert_matches_ref(pos, tri, (40, 48), dtype)
    pos, tri = _icosphere(4, dtype)
    pos = torch.cat([pos, pos * torch.tensor([3.0, 2.5, 1.0, 1.0], dtype=dtype)])  # batch of 2, zoomed
    a = _forward(pos, tri, 45, 38, True, mode="bands")
    b = _forward(pos, tri, 45, 38, True, mode="atomic")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    boxes = _bboxes(pos, tri, (45, 38), "atomic")
    size = (boxes[:, 1] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 2] + 1)
    drawn = boxes[:, 2] <= boxes[:, 3]
    small = size <= _SMALL_BOX
    assert (drawn & small).sum() > 1000 and (drawn & ~small).sum() > 50, "scene misses a path"


@pytest.mark.parametrize("dtype", DTYPES)
def test_mesh_denser_than_pixels_drops_uncovered_one_pixel_boxes(dtype):
    # From _CULL_DENSITY triangles a pixel the CPU setup drops triangles whose one-pixel box
    # misses its centre (setup_count_cull_kernel). The output must stay that of the reference
    # and, bitwise, of the atomic path (which draws every triangle), ids path included.
    from lumigrad.ops.rasterize import _CULL_DENSITY, RasterizeWorkspace, _rasterize_ids

    pos, tri = _icosphere(4, dtype)  # 5120 triangles
    res = (18, 21)
    assert tri.shape[0] >= _CULL_DENSITY * res[0] * res[1], "scene too sparse for the culling setup"
    _assert_matches_ref(pos, tri, res, dtype)
    pos2 = torch.cat([pos, pos * torch.tensor([1.5, 1.2, 1.0, 1.0], dtype=dtype)])  # batch of 2
    ws = RasterizeWorkspace()
    a = _forward(pos2, tri, res[0], res[1], True, mode="bands", ws=ws)
    back = ws._buffers["back"][: 2 * tri.shape[0]]
    b = _forward(pos2, tri, res[0], res[1], True, mode="atomic")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert int((back == 2).sum()) > 500, "no triangle took the culling branch"
    if dtype == torch.float32:
        ids = _rasterize_ids(pos2, tri, res)
        assert torch.equal(ids, b[0][..., 3].to(torch.int32).view(2, -1) - 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nearly_horizontal_edge_draws_only_its_pixels(dtype):
    # Edge 0 has a ~ 2e-10: its span line lies ~1e9 NDC away on most rows. The band path
    # once converted that to a column unclamped, wrapped int32 and drew 60 pixels, not 13.
    pos = torch.tensor(
        [[-0.9648486622574765, -1.013621047441913, 0.4725111266283443, -1.1668310622103708],
         [1.4953303742880362, -0.7833662112654555, 0.7020636766829422, 1.805353074702458],
         [1.1688859896452193, -0.6679678521508181, 0.2186409718250629, 1.5394049399873408]], dtype=dtype,
    )  # fmt: skip
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    a = _forward(pos[None], tri, 23, 29, True, mode="bands")
    b = _forward(pos[None], tri, 23, 29, True, mode="atomic")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    _assert_matches_ref(pos, tri, (23, 29), dtype)
    assert 0 < int((a[0][..., 3] > 0).sum()) < 20


def _bboxes(pos, tri, res, mode):
    from lumigrad.ops.rasterize import RasterizeWorkspace

    ws = RasterizeWorkspace()
    _forward(pos, tri, res[0], res[1], False, mode=mode, ws=ws)
    return ws._buffers["bbox"][: 4 * pos.shape[0] * tri.shape[0]].view(-1, 4).clone()


@pytest.mark.parametrize("dtype", DTYPES)
def test_vertex_bounds_give_the_per_triangle_bbox(dtype):
    # The band path takes each triangle's pixel box from per-vertex bounds (one division by w
    # per vertex); it must equal the per-triangle box of the atomic path bitwise, also for
    # corners within rounding of the margin around a pixel centre and for corners with w <= 0.
    g = torch.Generator().manual_seed(3)
    height, width, n = 23, 29, 300
    w = 0.3 + 2 * torch.rand(n, dtype=torch.float64, generator=g)
    m = 0.01  # _rasterize_funcs._BBOX_MARGIN, in pixels
    eps = torch.tensor([-1e-6, -1e-9, 0.0, 1e-9, 1e-6], dtype=torch.float64)
    tx = torch.randint(-2, width + 2, (n,), generator=g) + m * torch.sign(torch.randn(n, generator=g, dtype=torch.float64))
    tx = tx + eps[torch.randint(0, 5, (n,), generator=g)]
    ty = torch.randint(-2, height + 2, (n,), generator=g) - m + eps[torch.randint(0, 5, (n,), generator=g)]
    x = ((tx + 0.5) * 2 / width - 1) * w
    y = (1 - (ty + 0.5) * 2 / height) * w
    pos = torch.stack([x, y, torch.rand(n, dtype=torch.float64, generator=g) * 0.5 * w, w], 1).to(dtype)[None]
    pos[0, :20, 3] *= -1  # some corners behind the camera: the general case
    tri = torch.stack([torch.randperm(n, generator=g)[:3] for _ in range(400)]).int()
    # Nearby corners too, so that many boxes are small and cross the margin cases.
    near = torch.randint(0, n, (400,), generator=g)
    tri = torch.cat([tri, torch.stack([near, (near + 1) % n, (near + 2) % n], 1).int()])
    a, b = _bboxes(pos, tri, (height, width), "bands"), _bboxes(pos, tri, (height, width), "atomic")
    assert torch.equal(a, b)
    assert (a[:, 2] <= a[:, 3]).sum() > 100 and (a[:, 2] > a[:, 3]).sum() > 20
    ra = _forward(pos, tri, height, width, True, mode="bands")
    rb = _forward(pos, tri, height, width, True, mode="atomic")
    assert torch.equal(ra[0], rb[0]) and torch.equal(ra[1], rb[1])


def test_fill_rule_shared_edges():
    # A full-screen quad split along a diagonal through pixel centres, plus a fan of
    # triangles around the centre: every pixel is covered by exactly one triangle.
    pos = torch.tensor([[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], [-1.0, 1.0, 0.0, 1.0]])
    quads = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    fan_pos = torch.cat([pos, torch.tensor([[0.0, 0.0, 0.0, 1.0]])])
    fan = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]], dtype=torch.int32)
    for p, tri in ((pos, quads), (fan_pos, fan)):
        res = (16, 16)
        covered = torch.stack([rasterize(p, tri[k : k + 1], res).rast[0, ..., 3] > 0 for k in range(len(tri))])
        assert torch.equal(covered.sum(0), torch.ones(res, dtype=torch.int64)), "holes or double coverage"
        both = rasterize(p, tri, res).rast[0, ..., 3]
        assert torch.equal(both, rasterize_ref(p, tri, res)[0][0, ..., 3])


def test_degenerate_triangles_draw_nothing():
    # Repeated vertex: det == 0 exactly, nothing is drawn. (The reference disagrees: on CPUs
    # with FMA, torch.cross contracts a*b - c*d, so cross(c, c) != 0 and it draws a garbage
    # triangle; the kernel's cross products are exact here.)
    pos, tri = _random_scene(torch.float64, batch=1, seed=4)
    bad = torch.cat([tri, torch.tensor([[3, 3, 7], [5, 9, 5], [8, 8, 8]], dtype=torch.int32)])
    for dtype in DTYPES:
        rast = rasterize(pos.to(dtype), bad, (30, 30)).rast
        assert not torch.isin(rast[..., 3], torch.tensor([31.0, 32.0, 33.0], dtype=dtype)).any()
        assert torch.equal(rast, rasterize(pos.to(dtype), tri, (30, 30)).rast)


def test_depth_order_and_clipping():
    # Two full-screen triangles at different depths: the nearer wins, whatever the id order.
    far = torch.tensor([[-3.0, -3.0, 0.5, 1.0], [3.0, -3.0, 0.5, 1.0], [0.0, 3.0, 0.5, 1.0]])
    near = far.clone()
    near[:, 2] = -0.5
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    rast = rasterize(torch.cat([far, near]), tri, (6, 6)).rast
    assert torch.all(rast[..., 3] == 2) and torch.allclose(rast[..., 2], torch.tensor(-0.5))
    rast = rasterize(torch.cat([near, far]), tri, (6, 6)).rast
    assert torch.all(rast[..., 3] == 1)
    # Beyond the far plane (z_ndc > 1) nothing is drawn.
    beyond = far.clone()
    beyond[:, 2] = 1.5
    assert torch.all(rasterize(beyond, tri[:1], (6, 6)).rast == 0)
    # Entirely behind the camera: nothing is drawn.
    assert torch.all(rasterize(far * torch.tensor([1.0, 1, 1, -1]), tri[:1], (6, 6)).rast == 0)


def test_batched_equals_looped():
    pos, tri = _random_scene(torch.float32, batch=3, seed=7, behind=True)
    rast, db = rasterize(pos, tri, (20, 24))
    for b in range(3):
        r1, d1 = rasterize(pos[b], tri, (20, 24))
        assert torch.equal(rast[b], r1[0]) and torch.equal(db[b], d1[0])


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["tasks", "pixels"])
def test_backward_matches_reference(dtype, mode):
    pos, tri = _random_scene(dtype, seed=11, behind=True)
    pos.requires_grad_(True)
    res = (29, 31)
    rast, db = rasterize(pos, tri, res)
    rast_r, db_r = rasterize_ref(pos, tri, res)
    cot = torch.randn_like(rast)
    cot_db = torch.randn_like(db)
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    # rast alone, rast_db alone, and both together (every backward branch).
    for cr, cd in ((cot, None), (torch.zeros_like(cot), cot_db), (cot, cot_db)):
        outs, cots = ([rast_r], [cr]) if cd is None else ([rast_r, db_r], [cr, cd])
        (g_ref,) = torch.autograd.grad(outs, pos, cots, retain_graph=True)
        with torch.no_grad():
            g = _backward(pos.detach(), tri, rast.detach(), cr, cd, mode=mode)
        assert g.abs().max() > 1e-3
        torch.testing.assert_close(g, g_ref, atol=tol, rtol=tol)
        if mode == "tasks":
            outs = [rast] if cd is None else [rast, db]
            (g_auto,) = torch.autograd.grad(outs, pos, cots, retain_graph=True)
            assert torch.equal(g_auto, g)
    assert db.requires_grad


def test_no_db_is_not_differentiable():
    pos, tri = _random_scene(torch.float64, batch=1, seed=11)
    pos.requires_grad_(True)
    rast, db = rasterize(pos, tri, (9, 10), grad_db=False)
    assert db.shape == (1, 9, 10, 0) and not db.requires_grad and rast.requires_grad


def _gradcheck_scene():
    """Float64 scene whose pixel centres stay >= 1e-3 NDC away from every edge line, far more than
    gradcheck's 1e-6 perturbation moves them; two overlapping triangles, one partly behind the camera."""
    pos = torch.tensor(
        [
            [-0.91, -0.83, 0.2, 1.0],
            [0.87, -0.79, 0.3, 1.1],
            [0.04, 0.93, 0.1, 0.9],
            [-0.6, -0.55, -0.4, 1.0],
            [0.62, -0.45, -0.3, 1.0],
            [0.01, 0.4, 0.9, -0.5],  # w < 0: the triangle crosses the camera plane
        ],
        dtype=torch.float64,
    )
    return pos, torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32), (5, 6)


def test_gradcheck_scene_is_away_from_edges():
    from lumigrad.ops._rasterize_ref import edge_rows, pixel_centers_ndc

    pos, tri, res = _gradcheck_scene()
    r, _ = edge_rows(pos[tri.long()][..., [0, 1, 3]])  # [F, 3, 3]
    p = pixel_centers_ndc(*res, torch.float64, "cpu").reshape(-1, 3)
    dist = (torch.einsum("fkc,pc->pfk", r, p) / r[..., :2].norm(dim=-1)).abs()
    assert dist.min() > 1e-3
    assert (rasterize(pos, tri, res).rast[..., 3] == 2).sum() >= 3  # the depth test is exercised


@pytest.mark.parametrize("fn", [rasterize, rasterize_ref], ids=["kernel", "reference"])
def test_gradcheck(fn):
    pos, tri, res = _gradcheck_scene()
    pos.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: fn(p, tri, res)[0][..., :3], (pos,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", [rasterize, rasterize_ref], ids=["kernel", "reference"])
def test_gradcheck_rast_db(fn):
    # rast_db (nvdiffrast's grad_db) vs central differences, alone and together with rast.
    pos, tri, res = _gradcheck_scene()
    pos.requires_grad_(True)
    assert fn(pos, tri, res)[1].abs().max() > 0.1
    assert torch.autograd.gradcheck(lambda p: fn(p, tri, res)[1], (pos,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda p: torch.cat([fn(p, tri, res)[0][..., :3], fn(p, tri, res)[1]], -1),
                                    (pos,), eps=1e-6, atol=1e-6)


def test_runtime_helpers():
    # launch.empty (huge-page CPU buffers) and launch_chunks, added for this op.
    from lumigrad._runtime.launch import empty

    t = empty((1000, 1024), torch.float32, "cpu")  # 4 MB: takes the aligned path
    assert t.shape == (1000, 1024) and t.is_contiguous() and t.dtype == torch.float32
    t.fill_(3.0)
    assert float(t.sum()) == 3.0 * 1000 * 1024
    assert empty((3, 4), torch.int32, "cpu").shape == (3, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e35, 2.0**40])
def test_projectively_equal_triangles_rasterize_the_same(dtype, scale):
    # issue 13: a float32 triangle scaled by 1e20 (the same triangle projectively) gave NaN
    # barycentrics. Each triangle is rescaled by a power of two: same rast, rast_db and gradients.
    pos, tri = _random_scene(dtype, batch=1, seed=3, behind=True)
    res = (17, 19)
    p0 = pos.clone().requires_grad_(True)
    p1 = (pos * scale).requires_grad_(True)
    for fn in (rasterize, rasterize_ref):
        (r0, d0), (r1, d1) = fn(p0, tri, res), fn(p1, tri, res)
        assert torch.isfinite(r1).all() and torch.isfinite(d1).all()
        assert torch.equal(r1[..., 3], r0[..., 3])
        torch.testing.assert_close(r1, r0, atol=ATOL[dtype] * 10, rtol=1e-4)
        torch.testing.assert_close(d1, d0, atol=ATOL[dtype] * 10, rtol=1e-4)
        (g0,) = torch.autograd.grad((r0[..., :3] * r0[..., :3]).sum() + d0.sum(), p0)
        (g1,) = torch.autograd.grad((r1[..., :3] * r1[..., :3]).sum() + d1.sum(), p1)
        assert torch.isfinite(g1).all()
        torch.testing.assert_close(g1 * scale, g0, atol=1e-3 if dtype == torch.float32 else 1e-8, rtol=1e-3)


# ---------------------------------------------------------------- workspace (buffer reuse)


def test_workspace_reuses_buffers_and_matches():
    from lumigrad.ops.rasterize import RasterizeWorkspace

    ws = RasterizeWorkspace()
    for seed, res, batch in [(0, (20, 24), 2), (1, (20, 24), 2), (2, (33, 17), 1), (3, (40, 50), 3)]:
        pos, tri = _random_scene(torch.float32, batch=batch, seed=seed, behind=True)
        pos.requires_grad_(True)
        rast, db = rasterize(pos, tri, res, workspace=ws)
        rast0, db0 = rasterize(pos, tri, res)
        assert torch.equal(rast, rast0) and torch.equal(db, db0)
        cot = torch.randn_like(rast)
        (g,) = torch.autograd.grad((rast * cot).sum() + db.sum(), pos)
        (g0,) = torch.autograd.grad((rast0 * cot).sum() + db0.sum(), pos)
        assert torch.equal(g, g0)
    ptr = ws._buffers["rast"].data_ptr()
    rasterize(pos, tri, (10, 10), workspace=ws)  # smaller: same storage
    assert ws._buffers["rast"].data_ptr() == ptr


def test_workspace_revalidates_changed_faces_and_flags_stale_outputs():
    from lumigrad.ops.rasterize import RasterizeWorkspace

    ws = RasterizeWorkspace()
    pos, tri = _random_scene(torch.float64, batch=1, seed=2)
    rasterize(pos, tri, (8, 8), workspace=ws)
    bad = tri.clone()
    with pytest.raises(ValueError, match="out of range"):
        rasterize(pos, bad.fill_(pos.shape[1]), (8, 8), workspace=ws)  # another tensor
    tri[0, 0] = pos.shape[1]  # the validated tensor, modified in place
    with pytest.raises(ValueError, match="out of range"):
        rasterize(pos, tri, (8, 8), workspace=ws)
    tri[0, 0] = 0
    p = pos.clone().requires_grad_(True)
    first = rasterize(p, tri, (8, 8), workspace=ws).rast
    rasterize(p, tri, (8, 8), workspace=ws)  # overwrites `first`
    with pytest.raises(RuntimeError, match="inplace"):
        first.sum().backward()
    with pytest.raises(TypeError, match="workspace"):
        rasterize(pos, tri, (8, 8), workspace={})
