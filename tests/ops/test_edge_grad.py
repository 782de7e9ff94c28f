"""edge_grad: identity forward, kernel == torch reference, and visibility gradients vs the truth.

Truth is the closed-form silhouette derivative of a sphere, or central finite
differences of 8x8-supersampled hard renders (the derivative of the
area-averaged image, which the estimator approximates).
"""
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from lumigrad.geometry import icosphere
from lumigrad.ops import EdgeRim, edge_grad, edge_rim, interpolate, rasterize
from lumigrad.ops._edge_grad_ref import edge_grad_ref, edge_rim_ref
from lumigrad.scene.camera import Camera

F64 = torch.float64


@pytest.fixture(params=[True, False], ids=["cpu_layout", "cuda_layout"])
def layout(request, monkeypatch):
    """Run the kernels with the CPU launch layout, or with CUDA's (one pixel per thread, one
    atomically updated gradient buffer) on the CPU, to check the latter's index arithmetic."""
    monkeypatch.setattr(importlib.import_module("lumigrad.ops.edge_grad"), "_cpu_layout", lambda dev: request.param)
    return request.param


def _camera(res, dtype=F64, eye=(0.0, 0.0, 3.0)):
    return Camera.look_at(torch.tensor(eye, dtype=dtype), torch.zeros(3, dtype=dtype), width=res, height=res, fov_y_deg=45.0, dtype=dtype)


def _two_meshes(dtype=F64, front_shift=(0.0, 0.0, 0.0)):
    """A small icosphere in front of a larger one (occlusion boundaries on a dense back surface)."""
    vb, fb = icosphere(3)
    vf, ff = icosphere(3)
    vf = vf.to(dtype) * 0.35 + torch.tensor([0.15, 0.1, 1.2], dtype=dtype) + torch.as_tensor(front_shift, dtype=dtype)
    verts = torch.cat([vb.to(dtype), vf])
    faces = torch.cat([fb, ff + vb.shape[0]]).int()
    colors = torch.cat([torch.full((vb.shape[0], 1), 0.3, dtype=dtype), torch.ones(vf.shape[0], 1, dtype=dtype)])
    return verts, faces, colors


def _flat_colour_image(pos, faces, colors, res):
    """Per-face constant colour (from vertex 0 of each face) and its rast: a hard render."""
    rast, _ = rasterize(pos, faces, (res, res))
    ids = rast[..., 3].long()
    face_col = torch.cat([torch.zeros(1, colors.shape[1], dtype=colors.dtype), colors[faces[:, 0].long()]])
    return face_col[ids], rast


def test_forward_is_identity_and_colour_grad_passes_through():
    pos = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]], dtype=F64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, _ = rasterize(pos, tri, (12, 12))
    color = torch.rand(1, 12, 12, 3, dtype=F64, requires_grad=True)
    out = edge_grad(color, rast, pos, tri)
    assert torch.equal(out, color)
    cot = torch.rand_like(out)
    gc, gp = torch.autograd.grad(out, [color, pos], cot)
    assert torch.equal(gc, cot)
    assert gp[:, :2].abs().sum() > 0 and gp[:, 2].abs().sum() == 0


def test_no_grad_needed_returns_input():
    pos = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, _ = rasterize(pos, tri, (8, 8))
    color = torch.rand(1, 8, 8, 3)
    assert edge_grad(color, rast, pos, tri) is color


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c, r, p, t: (c[..., 0], r, p, t), "color must be"),
        (lambda c, r, p, t: (c, r[:, :4], p, t), "rast must be"),
        (lambda c, r, p, t: (c.double(), r, p, t), "share one dtype"),
        (lambda c, r, p, t: (c, r, p, t + 5), "tri"),
        (lambda c, r, p, t: (c, r, p.expand(3, -1, -1), t), "pos batch"),
        (lambda c, r, p, t: (c, torch.cat([r[..., :3], r[..., 3:] + 7], -1), p, t), "tri_id"),
        (lambda c, r, p, t: (c, r, p * float("nan"), t), "NaN"),
    ],
)
def test_bad_inputs_raise_before_launch(mutate, match):
    pos = torch.tensor([[[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]]], requires_grad=True)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, _ = rasterize(pos, tri, (8, 8))
    color = torch.rand(1, 8, 8, 3, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        edge_grad(*mutate(color, rast, pos, tri))


def _kernel_and_ref_grads(color, rast, pos, faces):
    cot = torch.rand_like(color)
    out = []
    for fn in (edge_grad, edge_grad_ref):
        p = pos.detach().requires_grad_(True)
        out.append(torch.autograd.grad((fn(color, rast, p, faces) * cot).sum(), p)[0])
    return out


def test_kernel_matches_reference_on_occlusion_and_batch(layout):
    verts, faces, _ = _two_meshes()
    eyes = torch.tensor([[0.0, 0.0, 3.0], [0.8, 0.4, 2.8]], dtype=F64)
    cam = Camera.look_at(eyes, torch.zeros(2, 3, dtype=F64), width=48, height=40, fov_y_deg=45.0, dtype=F64)
    pos = cam.project(verts)  # [2, V, 4]: batched positions
    rast, _ = rasterize(pos, faces, (40, 48))
    color = torch.rand(2, 40, 48, 3, dtype=F64)
    gk, gr = _kernel_and_ref_grads(color, rast, pos, faces)
    assert gk.abs().sum() > 0
    torch.testing.assert_close(gk, gr, rtol=1e-9, atol=1e-9)


def test_kernel_matches_reference_on_intersecting_triangles():
    # Two triangles crossing each other: the boundary between them is their intersection line.
    pos = torch.tensor(
        [[-0.8, -0.6, -0.5, 1.0], [0.8, -0.6, 0.5, 1.0], [0.0, 0.8, 0.0, 1.0],
         [-0.8, 0.6, 0.5, 1.0], [0.8, 0.6, -0.5, 1.0], [0.0, -0.8, 0.0, 1.0]], dtype=F64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    rast, _ = rasterize(pos, faces, (32, 32))
    color = torch.rand(1, 32, 32, 2, dtype=F64)
    gk, gr = _kernel_and_ref_grads(color, rast, pos, faces)
    assert gk[:, 2].abs().sum() > 0  # depth gets gradient only through intersections
    torch.testing.assert_close(gk, gr, rtol=1e-9, atol=1e-9)


def _rim_scene(batch: bool = False):
    """Two spheres, one occluding the other, seen by one or two cameras; smooth vertex colours."""
    verts, faces, _ = _two_meshes()
    eyes = torch.tensor([[0.0, 0.0, 3.0], [0.8, 0.4, 2.8]][: 2 if batch else 1], dtype=F64)
    cam = Camera.look_at(eyes, torch.zeros(len(eyes), 3, dtype=F64), width=40, height=36, fov_y_deg=45.0, dtype=F64)
    colors = torch.stack([verts[:, 0], verts[:, 1] ** 2, (verts[:, 2] + 1.5) ** 2], -1)
    return cam.project(verts), faces, colors


def test_edge_rim_codes_and_backward_match_reference(layout):
    pos, faces, _ = _rim_scene(batch=True)
    rast, rast_db = rasterize(pos, faces, (36, 40))
    leaf = rast.detach().requires_grad_(True)
    rim = edge_rim(leaf, rast_db, pos, faces)
    ref_rast, ref_codes = edge_rim_ref(leaf, rast_db, pos, faces)
    assert torch.equal(rim.rast, rast) and torch.equal(rim.codes, ref_codes)
    owners = ((rim.codes == 1) | (rim.codes == 2)).sum()
    assert owners > 20
    cot = torch.rand_like(rast)
    g, g_ref = (torch.autograd.grad(r, leaf, cot)[0] for r in (rim.rast, ref_rast))
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    changed = (g - cot).abs().sum(-1).flatten() > 0
    assert 0 < int(changed.sum()) <= int(owners)  # only owner pixels lose motion
    # On a pixel that owns a horizontal boundary, the projected gradient has no X screen motion.
    flat_db, flat_g = rast_db.reshape(-1, 4), g.reshape(-1, 4)
    for i in torch.nonzero(rim.codes[:, 0] == 1).flatten()[:10].tolist():
        a, _, c, _ = flat_db[i]
        assert abs(float(a * flat_g[i, 0] + c * flat_g[i, 1])) < 1e-9 * float(flat_g[i, :2].abs().sum() + 1)


def test_edge_grad_with_rim_matches_reference(layout):
    pos, faces, colors = _rim_scene(batch=True)
    cot = None
    grads = []
    for rim_fn, grad_fn in ((edge_rim, edge_grad), (edge_rim_ref, edge_grad_ref)):
        p = pos.detach().requires_grad_(True)
        rast, rast_db = rasterize(p, faces, (36, 40))
        rim = rim_fn(rast, rast_db, p, faces)
        shade_rast = rim[0]
        rim_arg = rim if isinstance(rim, EdgeRim) else EdgeRim(*rim)
        color = interpolate(colors[None].expand(2, -1, -1), shade_rast, faces).out ** 2
        out = grad_fn(color, rast, p, faces, rim=rim_arg)
        cot = torch.rand_like(out) if cot is None else cot
        grads.append(torch.autograd.grad((out * cot).sum(), p)[0])
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


def test_edge_rim_bad_inputs():
    pos, faces, _ = _rim_scene()
    rast, rast_db = rasterize(pos, faces, (36, 40))
    with pytest.raises(ValueError, match="rast_db"):
        edge_rim(rast, rast_db[..., :0], pos, faces)
    with pytest.raises(ValueError, match="tri"):
        edge_rim(rast, rast_db, pos, faces + 10_000)
    other = edge_rim(*rasterize(pos, faces, (18, 20)), pos, faces)
    color = torch.rand(1, 36, 40, 3, dtype=F64)
    p = pos.detach().requires_grad_(True)
    with pytest.raises(ValueError, match="rim must come from edge_rim"):
        edge_grad(color, rast, p, faces, rim=other)
    with pytest.raises(TypeError, match="rim must come from edge_rim"):
        edge_grad(color, rast, p, faces, rim=(rast, other.codes))


def _sphere_silhouette_grad(subdiv: int, res: int) -> float:
    v, f = icosphere(subdiv)
    cam = _camera(res, torch.float32)
    s = torch.tensor(1.0, requires_grad=True)
    pos = cam.project(v * s)
    rast, _ = rasterize(pos, f, (res, res))
    cov = edge_grad((rast[..., 3:] > 0).float(), rast, pos, f)
    ((cov - 0.25) ** 2).mean().backward()
    return s.grad.item()


def _sphere_truth() -> float:
    # loss = mean((cov - 0.25)^2) -> d/ds = 0.5 * d(area fraction)/ds, area fraction = pi r^2 / 4 (NDC).
    t = math.tan(math.radians(22.5))
    r = math.tan(math.asin(1 / 3)) / t
    dr_ds = (1 / 3) / (1 - 1 / 9) ** 1.5 / t
    return 0.5 * (math.pi / 2) * r * dr_ds


@pytest.mark.parametrize("subdiv", [3, 4, 6])
def test_sphere_silhouette_gradient_matches_closed_form(subdiv):
    grad = _sphere_silhouette_grad(subdiv, 512)
    assert abs(grad / _sphere_truth() - 1) < 0.03, grad


@pytest.mark.slow
def test_sphere_silhouette_gradient_dense_1m_triangles():
    grad = _sphere_silhouette_grad(8, 512)
    assert abs(grad / _sphere_truth() - 1) < 0.03, grad


def _weights(res, channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(1, channels, 4, 4, generator=g, dtype=F64)
    return F.interpolate(w, size=(res, res), mode="bilinear", align_corners=False).permute(0, 2, 3, 1) + 0.5


def test_occlusion_boundary_gradient_matches_supersampled_fd():
    """Front sphere over a dense back sphere: d loss / d(front translation) vs FD of 8x8 supersampling."""
    res, ss = 96, 8
    cam_lo, cam_hi = _camera(res), _camera(res * ss)
    weights = _weights(res, 1)
    verts, faces, colors = _two_meshes()
    n_back = icosphere(3)[0].shape[0]

    def loss(shift, cam, resolution, grad):
        v = torch.cat([verts[:n_back], verts[n_back:] + shift])
        pos = cam.project(v)
        img, rast = _flat_colour_image(pos, faces, colors, resolution)
        if grad:
            img = edge_grad(img, rast, pos, faces)
        else:
            img = F.avg_pool2d(img.permute(0, 3, 1, 2), ss).permute(0, 2, 3, 1)
        return (weights * img).sum()

    shift = torch.zeros(3, dtype=F64, requires_grad=True)
    grad = torch.autograd.grad(loss(shift, cam_lo, res, True), shift)[0]
    h = 0.5 * 2 * 1.8 * math.tan(math.radians(22.5)) / res  # half a pixel at the front sphere's depth
    for axis in range(2):
        e = torch.zeros(3, dtype=F64)
        e[axis] = h
        with torch.no_grad():
            fd = (loss(e, cam_hi, res * ss, False) - loss(-e, cam_hi, res * ss, False)) / (2 * h)
        assert abs(grad[axis] / fd - 1) < 0.05, (axis, grad[axis].item(), fd.item())


def test_intersection_gradient_matches_supersampled_fd():
    """Two crossing triangles; moving one in depth moves only their intersection line."""
    res, ss = 64, 8
    base = torch.tensor(
        [[-0.8, -0.7, 0.3, 1.0], [0.8, -0.7, 0.3, 1.0], [0.0, 0.8, -0.3, 1.0],
         [-0.9, 0.0, -0.4, 1.0], [0.9, 0.1, -0.4, 1.0], [0.0, 0.2, 0.6, 1.0]], dtype=F64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    colors = torch.tensor([[1.0], [1.0], [1.0], [0.2], [0.2], [0.2]], dtype=F64)
    weights = _weights(res, 1, seed=3)

    def loss(dz, resolution, grad):
        pos = base.clone()
        pos[3:, 2] = pos[3:, 2] + dz
        img, rast = _flat_colour_image(pos, faces, colors, resolution)
        if grad:
            img = edge_grad(img, rast, pos, faces)
        else:
            img = F.avg_pool2d(img.permute(0, 3, 1, 2), ss).permute(0, 2, 3, 1)
        return (weights * img).sum()

    dz = torch.tensor(0.0, dtype=F64, requires_grad=True)
    grad = torch.autograd.grad(loss(dz, res, True), dz)[0]
    h = 0.01
    with torch.no_grad():
        fd = (loss(torch.tensor(h, dtype=F64), res * ss, False) - loss(torch.tensor(-h, dtype=F64), res * ss, False)) / (2 * h)
    assert abs(fd) > 1.0
    assert abs(grad / fd - 1) < 0.05, (grad.item(), fd.item())


def test_edge_grad_reuses_edge_rim_work_only_for_the_same_unedited_tensors():
    # edge_grad takes edge_rim's faces check, triangle ids and screen vertices when handed the same
    # rast / pos / tri objects, unedited; the gradient is bitwise what a plain EdgeRim gives.
    from lumigrad.ops.edge_grad import _RimReuse

    pos, faces, colors = _rim_scene()
    grads = []
    for plain in (False, True):
        p = pos.detach().clone().requires_grad_(True)
        rast, rast_db = rasterize(p, faces, (36, 40))
        rim = edge_rim(rast, rast_db, p, faces)
        assert isinstance(rim, EdgeRim) and tuple(rim) == (rim.rast, rim.codes)
        assert _RimReuse.of(rim, rast, p, faces) is not None
        if plain:
            rim = EdgeRim(*rim)
            assert _RimReuse.of(rim, rast, p, faces) is None
        color = interpolate(colors[None], rim.rast, faces).out ** 2
        out = edge_grad(color, rast, p, faces, rim=rim)
        grads.append(torch.autograd.grad(out.sum(), p)[0])
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])
    # An in-place edit (or another tensor) after edge_rim: nothing is reused, and bad values still raise.
    p = pos.detach().clone()
    rast, rast_db = rasterize(p, faces, (36, 40))
    rim = edge_rim(rast, rast_db, p, faces)
    assert _RimReuse.of(rim, rast, p, faces) is not None
    assert _RimReuse.of(rim, rast, p.clone(), faces) is None
    p[0, 0] = float("nan")
    assert _RimReuse.of(rim, rast, p, faces) is None
    with pytest.raises(ValueError, match="NaN"):
        edge_grad(torch.rand(1, 36, 40, 3, dtype=F64), rast, p.requires_grad_(True), faces, rim=rim)
    f2 = faces.clone()
    rim = edge_rim(rast, rast_db, pos, f2)
    f2[0, 0] = 10_000
    with pytest.raises(ValueError, match="tri"):
        edge_grad(torch.rand(1, 36, 40, 3, dtype=F64), rast, pos.detach().requires_grad_(True), f2, rim=rim)
