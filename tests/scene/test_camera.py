"""Camera: projection against K, look-at orientation, rays, conversions, gradients, validation."""
import math

import pytest
import torch

from lumigrad.geometry.conventions import opencv_to_opengl_cam_to_world
from lumigrad.geometry.projection import ndc_to_pixel
from lumigrad.geometry.rotations import quaternion_to_matrix, rotation_6d_to_matrix
from lumigrad.geometry.transforms import compose_rigid
from lumigrad.scene.camera import Camera

D = torch.float64
W, H = 40, 30


def _cam(b=2, dtype=D, projection="perspective", seed=0):
    g = torch.Generator().manual_seed(seed)
    rot = quaternion_to_matrix(torch.randn(b, 4, dtype=dtype, generator=g))
    w2c = compose_rigid(rot, torch.tensor([0.1, -0.2, 4.0], dtype=dtype).expand(b, 3))
    k = torch.tensor([[45.0, 0.7, 21.0], [0.0, 40.0, 14.0], [0.0, 0.0, 1.0]], dtype=dtype).expand(b, 3, 3)
    if projection == "orthographic":
        k = k.clone()
        k[:, :2, :2] /= 4
    return Camera(w2c, k, W, H, near=0.5, far=20.0, projection=projection)


def _points(n=7, dtype=D):
    return torch.randn(n, 3, dtype=dtype, generator=torch.Generator().manual_seed(1)) * 0.8


def test_known_point_projects_to_K_pixel():
    k = torch.tensor([[100.0, 0.0, 20.0], [0.0, 80.0, 15.0], [0.0, 0.0, 1.0]], dtype=D)
    cam = Camera(torch.eye(4, dtype=D), k, W, H)
    uv = cam.project_to_pixels(torch.tensor([[0.2, -0.1, 2.0]], dtype=D))
    torch.testing.assert_close(uv, torch.tensor([[[20.0 + 100 * 0.1, 15.0 - 80 * 0.05]]], dtype=D))


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
def test_project_agrees_with_project_to_pixels(projection):
    cam = _cam(projection=projection)
    pts = _points()
    pos = cam.project(pts)
    assert pos.shape == (2, 7, 4)
    uv = ndc_to_pixel(pos[..., :2] / pos[..., 3:], W, H)
    # The NDC -> pixel formula of the conventions: u = (x+1) W/2, v = (1-y) H/2.
    torch.testing.assert_close(uv, cam.project_to_pixels(pts))


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
def test_project_then_unproject(projection):
    cam = _cam(projection=projection)
    pts = _points()
    uv = cam.project_to_pixels(pts)
    depth = torch.einsum("bij,vj->bvi", cam.world_to_cam[:, :3, :3], pts)[..., 2] + cam.world_to_cam[:, None, 2, 3]
    back = cam.unproject(uv, depth)
    torch.testing.assert_close(back, pts.expand(2, 7, 3))


def test_look_at_centre_and_up():
    eye = torch.tensor([[3.0, 1.0, 4.0], [0.0, 0.0, -5.0]], dtype=D)
    target = torch.tensor([0.5, 0.2, -0.1], dtype=D)
    cam = Camera.look_at(eye, target, width=W, height=H, fov_y_deg=50.0)
    uv = cam.project_to_pixels(target[None])
    torch.testing.assert_close(uv, torch.tensor([W / 2, H / 2], dtype=D).expand(2, 1, 2))
    above = cam.project_to_pixels((target + torch.tensor([0.0, 0.3, 0.0], dtype=D))[None])
    assert (above[..., 1] < H / 2).all()  # world +Y is up in the image: smaller v
    torch.testing.assert_close(cam.camera_center(), eye)
    # fov: a point on the top edge of the frustum lands on v = 0.
    c = Camera.look_at(torch.tensor([0.0, 0.0, -5.0], dtype=D), torch.zeros(3, dtype=D), width=W, height=H, fov_y_deg=50.0)
    edge = torch.tensor([[0.0, 5.0 * math.tan(math.radians(25.0)), 0.0]], dtype=D)
    torch.testing.assert_close(c.project_to_pixels(edge)[0, 0, 1], torch.tensor(0.0, dtype=D), atol=1e-9, rtol=0)
    # From +Z looking at the origin, world +X is image right.
    c = Camera.look_at([0.0, 0.0, 5.0], [0.0, 0.0, 0.0], width=W, height=H)
    assert c.project_to_pixels(torch.tensor([[1.0, 0.0, 0.0]]))[0, 0, 0] > W / 2


def test_look_at_degenerate_up():
    with pytest.raises(ValueError, match="parallel"):
        Camera.look_at([0.0, 5.0, 0.0], [0.0, 0.0, 0.0], width=W, height=H)
    with pytest.raises(ValueError, match="eye must differ"):
        Camera.look_at([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], width=W, height=H)


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
def test_rays_hit_their_pixels(projection):
    cam = _cam(projection=projection)
    rays = cam.rays()
    assert rays.origins.shape == (2, H, W, 3) and rays.dirs.shape == (2, H, W, 3)
    torch.testing.assert_close(rays.dirs.norm(dim=-1), torch.ones(2, H, W, dtype=D))
    pts = rays.origins + 3.0 * rays.dirs
    uv = cam.project_to_pixels(pts.reshape(2, -1, 3)).reshape(2, H, W, 2)
    j, i = torch.meshgrid(torch.arange(W, dtype=D), torch.arange(H, dtype=D), indexing="xy")
    torch.testing.assert_close(uv, torch.stack([j + 0.5, i + 0.5], -1).expand(2, H, W, 2))
    if projection == "perspective":
        torch.testing.assert_close(rays.origins, cam.camera_center()[:, None, None].expand(2, H, W, 3))
        # Unnormalised directions have camera z = 1.
        d = cam.rays(normalize=False).dirs
        z = torch.einsum("bj,bhwj->bhw", cam.world_to_cam[:, 2, :3], d)
        torch.testing.assert_close(z, torch.ones_like(z))


def test_gradcheck_project():
    cam = _cam(b=1)
    verts = _points(3).requires_grad_()
    w2c = cam.world_to_cam.clone().requires_grad_()
    k = cam.K.clone().requires_grad_()
    mask = torch.tensor([[1.0, 1, 1], [0, 1, 1], [0, 0, 0]], dtype=D)  # fx, s, cx, fy, cy are free

    def f(v, m, kk):
        m = torch.cat([m[:, :3], cam.world_to_cam[:, 3:]], 1)  # rows 0-2 of world_to_cam are free
        kk = kk * mask + cam.K * (1 - mask)
        return Camera(m, kk, W, H, 0.5, 20.0).project(v)

    assert torch.autograd.gradcheck(f, (verts, w2c, k))
    assert torch.autograd.gradcheck(lambda v: cam.project_to_pixels(v), (verts,))
    # Every free K entry and pose entry receives a gradient.
    f(verts, w2c, k).pow(2).sum().backward()
    assert (k.grad[0][mask.bool()] != 0).all() and (w2c.grad[0, :3] != 0).all()


@pytest.mark.parametrize("param", ["quaternion", "6d"])
def test_gradients_reach_pose_parameterisations(param):
    g = torch.Generator().manual_seed(2)
    if param == "quaternion":
        x = torch.tensor([1.0, 0.1, -0.2, 0.05], dtype=D, requires_grad=True)
        rot_fn = quaternion_to_matrix
    else:
        x = torch.tensor([1.0, 0.1, 0.0, 0.0, 1.0, 0.2], dtype=D, requires_grad=True)
        rot_fn = rotation_6d_to_matrix
    t = torch.tensor([0.0, 0.0, 4.0], dtype=D, requires_grad=True)
    fov = torch.tensor(45.0, dtype=D, requires_grad=True)
    pts = torch.randn(5, 3, dtype=D, generator=g) * 0.5

    def loss(x_, t_, fov_):
        cam = Camera.from_fov(fov_, W, H, compose_rigid(rot_fn(x_), t_))
        return (cam.project_to_pixels(pts) ** 2).sum() + cam.rays().dirs[..., 0].sum()

    loss(x, t, fov).backward()
    for p in (x, t, fov):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(loss, (x.detach().requires_grad_(), t.detach().requires_grad_(), fov.detach().requires_grad_()))


def test_from_opengl_and_export_round_trip():
    cam = _cam()
    c2w_gl = cam.cam_to_world_opengl()
    torch.testing.assert_close(c2w_gl, opencv_to_opengl_cam_to_world(torch.linalg.inv(cam.world_to_cam)))
    back = Camera.from_opengl(c2w_gl, W, H, K=cam.K, near=0.5, far=20.0)
    torch.testing.assert_close(back.world_to_cam, cam.world_to_cam)
    # An OpenGL camera looks along its -z axis: the point 2 units along -z projects to the centre.
    c = Camera.from_opengl(c2w_gl, W, H, fov_y_deg=40.0)
    ahead = c2w_gl[:, :3, 3] - 2 * c2w_gl[:, :3, 2]
    uv = torch.stack([c[i].project_to_pixels(ahead[i : i + 1])[0, 0] for i in range(2)])
    torch.testing.assert_close(uv, torch.tensor([W / 2, H / 2], dtype=D).expand(2, 2))
    with pytest.raises(ValueError, match="exactly one"):
        Camera.from_opengl(c2w_gl, W, H)


def test_matrices_and_batching():
    cam = _cam(b=3)
    assert len(cam) == 3 and cam.resolution == (H, W)
    torch.testing.assert_close(cam.world_to_clip(), cam.cam_to_clip() @ cam.world_to_cam)
    one = cam[1]
    assert one.batch_size == 1
    torch.testing.assert_close(one.project(_points()), cam.project(_points())[1:2])
    assert cam[-1].batch_size == 1 and cam[0:2].batch_size == 2
    with pytest.raises(IndexError):
        cam[3]
    batched = cam.project(_points().expand(3, 7, 3))
    torch.testing.assert_close(batched, cam.project(_points()))
    # A single K broadcasts over a batch of poses.
    c = Camera(cam.world_to_cam, cam.K[0], W, H)
    assert c.K.shape == (3, 3, 3)
    c32 = cam.to(dtype=torch.float32)
    assert c32.dtype == torch.float32 and c32.project(_points(dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(K=torch.eye(3, dtype=D)[:2]), ValueError, "K must be"),
        (dict(world_to_cam=torch.eye(4, dtype=D)[None].expand(3, 4, 4)), ValueError, "batch sizes must match"),
        (dict(world_to_cam=torch.full((4, 4), float("nan"), dtype=D)), ValueError, "world_to_cam contains"),
        (dict(world_to_cam=torch.zeros(4, 4, dtype=D)), ValueError, "last row"),
        (dict(world_to_cam=torch.eye(4)), ValueError, "share dtype"),
        (dict(K=torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=D))), ValueError, "fx and fy"),
        (dict(K=torch.ones(3, 3, dtype=D)), ValueError, "K must be"),
        (dict(width=0), ValueError, "width"),
        (dict(height=2.5), ValueError, "height"),
        (dict(near=0.0), ValueError, "near"),
        (dict(near=5.0, far=1.0), ValueError, "near"),
        (dict(projection="fisheye"), ValueError, "projection"),
        (dict(K=[[1, 0, 0]]), TypeError, "K must be a torch.Tensor"),
    ],
)
def test_validation(kwargs, exc, match):
    args = dict(world_to_cam=torch.eye(4, dtype=D)[None].expand(2, 4, 4), K=torch.eye(3, dtype=D)[None].expand(2, 3, 3),
                width=W, height=H)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Camera(**args)


def test_point_validation():
    cam = _cam()
    with pytest.raises(ValueError, match="verts_world"):
        cam.project(torch.zeros(5, 3, dtype=torch.float32))
    with pytest.raises(ValueError, match="batch"):
        cam.project(torch.zeros(3, 5, 3, dtype=D))
    with pytest.raises(TypeError):
        cam.project([[0.0, 0.0, 0.0]])


def test_project_keeps_the_fixed_matrix_only_while_the_camera_is_unedited():
    cam = Camera.look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3), width=32, height=24, fov_y_deg=50.0)
    pts = torch.randn(7, 3)
    first = cam.project(pts)
    assert torch.equal(first, cam.project(pts)) and "_clip_cache" in cam.__dict__
    torch.testing.assert_close(first[0], (cam.world_to_clip()[0] @ torch.cat([pts, torch.ones(7, 1)], 1).T).T)
    with torch.no_grad():
        cam.K[0, 0, 0] *= 2  # an in-place edit of the intrinsics: the next projection sees it
    moved = cam.project(pts)
    assert not torch.equal(moved, first)
    torch.testing.assert_close(moved[0], (cam.world_to_clip()[0] @ torch.cat([pts, torch.ones(7, 1)], 1).T).T)
    with torch.no_grad():
        cam.world_to_cam[0, 0, 3] += 1.0
    torch.testing.assert_close(cam.project(pts)[0], (cam.world_to_clip()[0] @ torch.cat([pts, torch.ones(7, 1)], 1).T).T)
    # A camera being optimised is never cached: its gradient flows.
    k = cam.K.clone().requires_grad_(True)
    opt = Camera(world_to_cam=cam.world_to_cam, K=k, width=32, height=24)
    opt.project(pts).sum().backward()
    assert k.grad is not None and k.grad.abs().sum() > 0
