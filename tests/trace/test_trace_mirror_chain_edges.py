"""Silhouettes seen through two planar mirrors (camera -> mirror A -> mirror B -> object) vs finite differences.

Scene (lumigrad.render._trace_edges_mirror, chains of two mirrors): the camera looks down -z at mirror A
(45 degrees, filling the view), which sends its rays along +x to mirror B (45 degrees), which sends them
along +z to an emissive quad behind the camera. Neither B nor the quad is in view, and the quad is not in
A's view either: it is seen only after both reflections. With two bounces every pixel is
``0.8 * 0.5 * emission`` or 0, so moving the quad or the camera changes the image *only* through the
twice-reflected outline: interior gradients are exactly zero, and all of the gradient must come from the
chain's term (the single-mirror terms see only B's rim in A, black on black).
"""
import pytest
import torch

import lumigrad.render._trace_edges_mirror as mirror_edges
from lumigrad.render.path import _Scene, prepare_trace, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings

DT = torch.float64
RES = 16
FACES = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
_S = 0.5 ** 0.5


def _quad(c, u, v):
    c, u, v = (torch.as_tensor(x, dtype=DT) for x in (c, u, v))
    return torch.stack([c - u - v, c + u - v, c + u + v, c - u + v])


def _scene(quad=None, eye=None, orthographic=False, mirror_a=None, mirror_b=None):
    """``quad`` / ``eye`` / ``mirror_a`` / ``mirror_b``: ``[3]`` translations of the emitter, the camera (and its
    target) and the mirrors. The quad's image is about 4 x 3 pixels (columns 6-9, rows 6-9)."""
    a = _quad((0, 0, -1), (0.7 * _S, 0, -0.7 * _S), (0, 0.7, 0))  # normal (1, 0, 1) / sqrt 2: -z to +x
    b = _quad((1.5, 0, -1), (0.9 * _S, 0, 0.9 * _S), (0, 0.9, 0))  # normal (-1, 0, 1) / sqrt 2: +x to +z
    q = _quad((1.5, 0.05, 0.5), (0.25, 0, 0), (0, 0.2, 0))
    e = torch.zeros(3, dtype=DT)
    if quad is not None:
        q = q + quad
    if eye is not None:
        e = e + eye
    a = a if mirror_a is None else a + mirror_a
    b = b if mirror_b is None else b + mirror_b
    cam = Camera.look_at(e, e + torch.tensor([0.0, 0, -1], dtype=DT), width=RES, height=RES, fov_y_deg=30.0)
    if orthographic:  # same pose, about the same footprint
        k = cam.K.clone()
        k[:, 0, 0] = k[:, 1, 1] = RES / 1.5
        cam = Camera(cam.world_to_cam, k, RES, RES, 0.01, 100.0, "orthographic")
    return [Shape(Mesh(a, FACES), MirrorMaterial(0.8)), Shape(Mesh(b, FACES), MirrorMaterial(0.5)),
            Shape(Mesh(q, FACES.flip(1)), LambertMaterial(0.0), emission=torch.tensor([2.5, 2.5, 2.5], dtype=DT))], cam


# Pixel weights constant over the outline's pixels (columns 6 and 9-10, rows 6 and 9-10), different on either
# side of the image's middle so that the outline's sides do not cancel (as in test_trace_mirror_edges).
_W = (torch.where(torch.arange(RES) < RES // 2, 1.0, 0.5)[:, None]
      * torch.where(torch.arange(RES) < RES // 2, 1.0, 0.3)[None, :]).to(DT)[None, :, :, None].expand(1, RES, RES, 3)


def _loss(x, which, st):
    axis = {"x": 0, "y": 1, "z": 2}[which[-1]]
    shift = torch.stack([x if a == axis else x * 0 for a in range(3)])
    kind = which.split("_")[0]
    kw = {"quad": dict(quad=shift), "camera": dict(eye=shift), "ortho": dict(quad=shift, orthographic=True),
          "mirrorA": dict(mirror_a=shift), "mirrorB": dict(mirror_b=shift)}[kind]
    shapes, cam = _scene(**kw)
    return (render_trace(shapes, cam, [], st).image * _W).sum()


def _grad(which, st):
    x = torch.zeros((), dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(_loss(x, which, st), x, allow_unused=True)
    return 0.0 if g is None else float(g)


def _fd(which, h=0.05, spp=1024):
    with torch.no_grad():
        st = TraceSettings(spp=spp, max_bounces=2, boundary="none")
        return float(_loss(torch.tensor(h, dtype=DT), which, st) - _loss(torch.tensor(-h, dtype=DT), which, st)) / (2 * h)


EDGE = TraceSettings(spp=1, max_bounces=2, edge_samples=32000, shadow_light_samples=0, indirect_samples=0)


def test_quad_is_seen_only_after_two_reflections():
    shapes, cam = _scene()
    with torch.no_grad():
        one = render_trace(shapes, cam, [], TraceSettings(spp=16, boundary="none")).image
        img = render_trace(shapes, cam, [], TraceSettings(spp=16, max_bounces=2, boundary="none")).image[0, ..., 0]
    assert float(one.abs().max()) == 0.0  # not in view, nor in A alone
    assert float(img.max()) == pytest.approx(1.0) and 8 <= int((img > 0.5).sum()) < 20


@pytest.mark.parametrize("which", ["quad_x", "quad_y", "quad_z", "camera_y", "mirrorA_z", "mirrorB_x", "ortho_y"])
def test_twice_reflected_silhouette_gradient_matches_fd(which):
    assert _grad(which, TraceSettings(spp=1, max_bounces=2, boundary="none")) == 0.0  # no interior gradient
    g, fd = _grad(which, EDGE), _fd(which)
    assert abs(fd) > 2
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)


def test_without_the_chain_term_the_gradient_is_missing(monkeypatch):
    single = mirror_edges.mirror_samples
    monkeypatch.setattr(mirror_edges, "mirror_samples",
                        lambda sc, view, mirror, M, gen, second=None: None if second is not None
                        else single(sc, view, mirror, M, gen))
    assert _grad("quad_x", EDGE) == 0.0
    assert _grad("camera_y", EDGE) == 0.0


def test_one_bounce_skips_the_chains(monkeypatch):
    """With one bounce nothing is seen through two mirrors, so no pair is sampled."""
    calls = []
    single = mirror_edges.mirror_samples

    def spy(sc, view, mirror, M, gen, second=None):
        calls.append(second)
        return single(sc, view, mirror, M, gen, second)

    monkeypatch.setattr(mirror_edges, "mirror_samples", spy)
    _grad("quad_x", TraceSettings(spp=1, edge_samples=100, shadow_light_samples=0))
    assert calls == [None, None]
    calls.clear()
    _grad("quad_x", TraceSettings(spp=1, max_bounces=2, edge_samples=100, shadow_light_samples=0, indirect_samples=0))
    assert len(calls) == 4 and calls[:2] == [None, None] and None not in calls[2:]


def test_pair_cheap_test():
    """B is seen in A, but A is not seen in B (B is out of view: the pair's window is empty)."""
    shapes, cam = _scene()
    sc = _Scene(shapes, cam, [], EDGE, prepare_trace(shapes))
    tri = sc.verts.detach()[sc.faces_long.reshape(-1)].reshape(-1, 3, 3)
    sc.accel._face_data = (torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), tri[:, 0])
    view = (0, cam.world_to_cam[0], cam.K[0], torch.linalg.inv(cam.world_to_cam[0]), True)
    a, b = mirror_edges.planar_mirrors(sc)
    ab, ba = mirror_edges.MirrorView(sc, view, a, b), mirror_edges.MirrorView(sc, view, b, a)
    assert ab.signs == [1, 1] and ab.chain_seen() and 0.1 < ab.share() < 1
    assert not ba.chain_seen() and ba.share() == 0.0
