"""Camera rays' closest hits by rasterization (TraceSettings.primary): exactness, equivalence with the BVH."""

import pytest
import torch

from lumigrad.geometry.primitives import icosphere, plane
from lumigrad.ops._trace_ref import ray_triangle
from lumigrad.ops.trace import intersect, trace_direct
from lumigrad.render import path
from lumigrad.render.path import TraceSettings, prepare_trace, render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import PointLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial
from lumigrad.scene.trace_types import Shape

DT = torch.float64


def _scene(res=24, projection="perspective", views=2):
    """A sphere on a floor, seen by ``views`` cameras (the second with skew and an off-centre principal point)."""
    v, f = icosphere(3, dtype=DT)
    pv, pf = plane(4.0, dtype=DT)
    pv = pv - torch.tensor([0.0, 1.0, 0.0], dtype=DT)
    shapes = [Shape(Mesh(v, f), LambertMaterial(torch.tensor([0.8, 0.5, 0.3], dtype=DT))),
              Shape(Mesh(pv, pf), GGXMaterial(torch.tensor([0.6, 0.6, 0.6], dtype=DT), 0.5, 0.0))]
    eyes = torch.tensor([[0.0, 1.5, 4.0], [2.5, 2.0, 3.0]], dtype=DT)[:views]
    cam = Camera.look_at(eyes, torch.zeros(views, 3, dtype=DT), width=res, height=res + 4)
    k = cam.K.clone()
    if views > 1:
        k[1, 0, 1] = 3.0  # skew
        k[1, 0, 2] += 2.5
        k[1, 1, 2] -= 1.5
    if projection == "orthographic":
        k[:, 0, 0] = k[:, 1, 1] = res / 3.5
    cam = Camera(cam.world_to_cam, k, res, res + 4, projection=projection)
    lights = [PointLight(torch.tensor([1.5, 3.0, 1.0], dtype=DT), intensity=25.0)]
    return shapes, cam, lights


def _sample_rays(sc):
    """World rays of every camera sample ``[B, S, H*W]`` (the ones _chunk builds), view-major."""
    cam, S = sc.camera, sc.settings.spp
    B, H, W = cam.batch_size, cam.height, cam.width
    view = torch.arange(B)[:, None, None].expand(B, S, H * W).reshape(-1)
    s = torch.arange(S)[None, :, None].expand(B, S, H * W).reshape(-1)
    q = torch.arange(H * W)[None, None, :].expand(B, S, H * W).reshape(-1)
    pix = torch.stack([(q % W).to(DT), (q // W).to(DT)], -1) + sc.offsets[view, s]
    return path._camera_rays(cam, view, pix)


@pytest.mark.parametrize("projection,spp", [("perspective", 4), ("orthographic", 4), ("perspective", 3)])
def test_rasterized_hit_is_the_closest_ray_hit(projection, spp):
    # spp = 4: stratified offsets; spp = 3: uniform ones.
    shapes, cam, lights = _scene(projection=projection)
    sc = path._Scene(shapes, cam, lights, TraceSettings(spp=spp), prepare_trace(shapes))
    prim = path._raster_primary(sc)
    assert prim is not None and prim.shape == (2, spp, cam.height * cam.width)
    o, d = _sample_rays(sc)
    hits = intersect(sc.accel.bvh, o, d)
    ras = prim.reshape(-1)
    same = ras == hits.face
    assert int((ras >= 0).sum()) > 0.3 * ras.numel() and int((ras < 0).sum()) > 0.05 * ras.numel()
    assert float(same.float().mean()) > 0.995
    # Where they differ, the ray grazes an edge: both triangles are hit at the same point (or it grazes a silhouette).
    bad = torch.nonzero(~same).squeeze(1)
    both = bad[(ras[bad] >= 0) & (hits.face[bad] >= 0)]
    if both.numel():
        ta = ray_triangle(o[both], d[both], *sc.verts[sc.faces_long[ras[both].long()]].unbind(1))[0]
        tb = ray_triangle(o[both], d[both], *sc.verts[sc.faces_long[hits.face[both].long()]].unbind(1))[0]
        assert float((ta - tb).abs().max()) < 1e-4
    assert bad.numel() - both.numel() <= 0.002 * ras.numel()
    # The sub-pixel offsets are fixed by the seed, one per (view, sample index), stratified.
    assert torch.equal(sc.offsets, path._Scene(shapes, cam, lights, TraceSettings(spp=spp), sc.accel).offsets)
    assert not torch.equal(sc.offsets, path._Scene(shapes, cam, lights, TraceSettings(spp=spp, seed=1), sc.accel).offsets)
    assert bool(((sc.offsets >= 0) & (sc.offsets < 1)).all())
    if spp == 4:
        # The Sobol sampler's offsets (the default): a (0, 2, 2)-net per view (one in each 1/4 x 1, 1/2 x 1/2, 1 x 1/4
        # cell); the independent sampler's: jittered 2 x 2 strata, independent per sample index.
        sob = sc.offsets
        for a in range(3):
            cells = torch.floor(sob[..., 0] * 2**a) * 2 ** (2 - a) + torch.floor(sob[..., 1] * 2 ** (2 - a))
            assert all(torch.unique(c).numel() == 4 for c in cells)
        ind = path._Scene(shapes, cam, lights, TraceSettings(spp=spp, sampler="independent"), sc.accel).offsets
        cell = torch.stack([torch.arange(4) // 2, torch.arange(4) % 2], -1).to(DT) / 2
        jit = ind - cell
        assert bool(((jit >= 0) & (jit < 0.5)).all())
        assert not torch.allclose(jit, jit[:, :1].expand_as(jit))
        assert not torch.equal(sob[0], sob[1])  # scrambled per view


def test_many_faces_per_pixel_use_the_bvh():
    shapes, cam, lights = _scene(res=4, views=1)  # 1282 faces, 4 x 8 pixels
    sc = path._Scene(shapes, cam, lights, TraceSettings(spp=1), prepare_trace(shapes))
    assert path._raster_primary(sc) is None
    prim = path._raster_primary(sc, force=True)
    o, d = _sample_rays(sc)
    assert float((prim.reshape(-1) == intersect(sc.accel.bvh, o, d).face).float().mean()) > 0.9


@pytest.mark.parametrize("bounces", [1, 2])
def test_raster_and_bvh_primary_give_the_same_image_and_gradients(bounces):
    # bounces=1 with a Lambert-only scene is the fused trace_direct path; bounces=2 (GGX floor) the general one.
    shapes, cam, lights = _scene(res=24)  # 1282 faces, 24 x 28 pixels per view (1.9 a pixel): rasterized
    if bounces == 1:
        shapes = [shapes[0], Shape(shapes[1].mesh, LambertMaterial(0.6))]
    assert path._raster_primary(path._Scene(shapes, cam, lights, TraceSettings(spp=4), prepare_trace(shapes))) is not None
    assert path._fused_ok(path._Scene(shapes, cam, lights, TraceSettings(max_bounces=bounces), prepare_trace(shapes))) \
        == (bounces == 1)
    accel = prepare_trace(shapes)
    out, grads = {}, {}
    for prim in ("raster", "bvh"):
        v = shapes[0].mesh.verts.clone().requires_grad_(True)
        sh = [Shape(shapes[0].mesh.with_verts(v), shapes[0].material), shapes[1]]
        st = TraceSettings(spp=4, max_bounces=bounces, primary=prim, edge_samples=200)
        img = render_trace(sh, cam, lights, st, accel=accel).image
        img.square().mean().backward()
        out[prim], grads[prim] = img.detach(), v.grad
    assert float(out["raster"].abs().max()) > 0.1
    # Same sample positions, same hits except rays that graze an edge: same image, same gradients.
    d = (out["raster"] - out["bvh"]).abs()
    assert float((d > 1e-6).float().mean()) < 0.01 and float(d.mean()) < 1e-4
    torch.testing.assert_close(grads["raster"], grads["bvh"], rtol=0.02, atol=1e-4 * float(grads["bvh"].abs().max()))


def test_chunking_and_replay_do_not_change_the_image():
    shapes, cam, lights = _scene(res=12)
    shapes = [shapes[0], Shape(shapes[1].mesh, LambertMaterial(0.6))]  # fused path: no random numbers per chunk
    accel = prepare_trace(shapes)
    res = []
    for chunk, replay in ((1 << 16, False), (37, False), (100, True)):
        v = shapes[0].mesh.verts.clone().requires_grad_(True)
        sh = [Shape(shapes[0].mesh.with_verts(v), shapes[0].material), shapes[1]]
        st = TraceSettings(spp=4, chunk_rays=chunk, replay=replay, boundary="none")
        img = render_trace(sh, cam, lights, st, accel=accel).image
        img.sum().backward()
        res.append((img.detach(), v.grad))
    for img, g in res[1:]:
        torch.testing.assert_close(img, res[0][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g, res[0][1], rtol=1e-9, atol=1e-12)


def test_vertex_behind_the_camera_falls_back_to_the_bvh():
    # The camera stands over a floor that extends behind it: no near plane is exact, the BVH traces the samples.
    pv, pf = plane(20.0, dtype=DT)
    v, f = icosphere(2, dtype=DT)
    shapes = [Shape(Mesh(pv - torch.tensor([0.0, 1.0, 0.0], dtype=DT), pf)), Shape(Mesh(v, f))]
    cam = Camera.look_at(torch.tensor([0.0, 0.5, 3.0], dtype=DT), torch.zeros(3, dtype=DT), width=10, height=10)
    lights = [PointLight(torch.tensor([1.0, 3.0, 1.0], dtype=DT), intensity=10.0)]
    sc = path._Scene(shapes, cam, lights, TraceSettings(), prepare_trace(shapes))
    assert path._raster_primary(sc, force=True) is None
    a = render_trace(shapes, cam, lights, TraceSettings(spp=1, primary="raster"))
    b = render_trace(shapes, cam, lights, TraceSettings(spp=1, primary="bvh"))
    assert bool((a.alpha[:, 6:] == 1).all())  # the floor, in the lower half of the view
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)


def test_trace_direct_with_known_faces_matches_its_bvh_query():
    shapes, cam, lights = _scene(res=16, views=1)
    sc = path._Scene(shapes, cam, lights, TraceSettings(spp=1), prepare_trace(shapes))
    o, d = _sample_rays(sc)
    lk, lv, _, _ = path._light_rows(sc)
    lk = torch.cat([lk, torch.ones(1, dtype=torch.int32)])
    lv = torch.cat([lv, torch.tensor([[0.6, 0.8, 0.0]], dtype=DT)])
    face, vis = trace_direct(sc.accel.bvh, o, d, lk, lv, sc.eps)
    face2, vis2 = trace_direct(sc.accel.bvh, o, d, lk, lv, sc.eps, face=face)
    assert torch.equal(face2, face) and int((~vis).sum()) > 5 and int(vis.sum()) > 5
    assert float((vis2 == vis).float().mean()) > 0.999
    with pytest.raises(ValueError, match="trace_direct"):
        trace_direct(sc.accel.bvh, o, d, lk, lv, sc.eps, face=face.long())
    with pytest.raises(ValueError, match="trace_direct"):
        trace_direct(sc.accel.bvh, o, d, lk, lv, sc.eps, face=face + 10**6)


def test_primary_setting_is_checked():
    with pytest.raises(ValueError, match="primary"):
        TraceSettings(primary="embree")
