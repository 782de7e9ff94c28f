"""Short training runs on tiny synthetic scenes: PSNR must rise."""
import math

import torch

from lumigrad.fields.encodings import HashGridEncoding
from lumigrad.fields.gaussians import DensityControl, GaussianModel
from lumigrad.fields.mlp import mlp
from lumigrad.fields.occupancy import OccupancyGrid
from lumigrad.losses.image import psnr
from lumigrad.ops.volume_render import ray_aabb_intersect
from lumigrad.render.splat import render_gaussians
from lumigrad.render.volume import occupancy_samples, render_rays, stratified_samples
from lumigrad.scene.camera import Camera


def _cams(n, size):
    az = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    eyes = torch.stack([3 * torch.cos(az), 0.8 * torch.ones(n), 3 * torch.sin(az)], -1)
    return Camera.look_at(eyes, torch.zeros(3), width=size, height=size, fov_y_deg=40.0)


def test_splat_training_raises_psnr():
    g = torch.Generator().manual_seed(0)
    truth = GaussianModel.random_init(12, 0.5, g, opacity=0.8)
    with torch.no_grad():
        truth.sh_dc.copy_(torch.rand(12, 1, 3, generator=g) * 2 - 1)
        truth.log_scales.fill_(math.log(0.12))
    cams = _cams(3, 32)
    white = torch.ones(3)
    targets = [render_gaussians(truth, cams.world_to_cam[i], cams.K[i], 32, 32, 0, white).image.detach() for i in range(3)]
    model = GaussianModel.random_init(12, 0.5, torch.Generator().manual_seed(5), opacity=0.5)
    with torch.no_grad():
        model.log_scales.fill_(math.log(0.12))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)

    def score():
        with torch.no_grad():
            pred = [render_gaussians(model, cams.world_to_cam[i], cams.K[i], 32, 32, 0, white).image for i in range(3)]
        return float(psnr(torch.stack(pred), torch.stack(targets)).mean())

    before = score()
    for it in range(45):
        i = it % 3
        r = render_gaussians(model, cams.world_to_cam[i], cams.K[i], 32, 32, 0, white)
        loss = (r.image - targets[i]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = score()
    assert after > before + 3.0, (before, after)


def test_nerf_training_raises_psnr():
    torch.manual_seed(0)
    cams = _cams(2, 12)
    rays = cams.rays()
    o, d = rays.origins.reshape(-1, 3), rays.dirs.reshape(-1, 3)
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    # Known field: a coloured ball of radius 0.6.
    def truth(p, dirs):
        inside = (p.norm(dim=-1) < 0.6).float()
        return inside * 20.0, torch.sigmoid(p * 3)

    t0, t1, _ = ray_aabb_intersect(o, d, aabb)
    smp = stratified_samples(t0, t1, 48, jitter=False)
    bg = torch.ones(3)
    target = render_rays(truth, o, d, smp, bg).colors

    enc = HashGridEncoding(4, 2, 10, 4, 32, init_scale=1e-2, generator=torch.Generator().manual_seed(0))
    net = mlp(enc.out_dim, 32, 4, 1)

    def field(p, dirs):
        h = net(enc(((p - aabb[:3]) / (aabb[3:] - aabb[:3])).clamp(0, 1)))
        return torch.exp(h[:, 0].clamp(max=10)), torch.sigmoid(h[:, 1:])

    opt = torch.optim.Adam(list(enc.parameters()) + list(net.parameters()), lr=2e-2, eps=1e-15)
    gen = torch.Generator().manual_seed(1)

    def score():
        with torch.no_grad():
            return float(psnr(render_rays(field, o, d, smp, bg).colors[None, None], target[None, None]))

    before = score()
    for _ in range(30):
        s = stratified_samples(t0, t1, 48, generator=gen)
        loss = ((render_rays(field, o, d, s, bg).colors - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = score()
    assert after > before + 3.0, (before, after)

    # The occupancy grid learns that the corners are empty and then skips them.
    grid = OccupancyGrid(aabb, 8)
    for _ in range(12):  # one jittered point per cell per update; a few updates find the boundary cells
        frac = grid.update(lambda p: truth(p, None)[0], 0.05, warmup=True, decay=1.0)
    assert 0.0 < frac < 0.7
    occ = occupancy_samples(o, d, aabb, grid.query, 0.05, jitter=False)
    full = occupancy_samples(o, d, aabb, lambda p: torch.ones(p.shape[:-1], dtype=torch.bool), 0.05, jitter=False)
    assert 0 < occ.t_starts.numel() < full.t_starts.numel()
    torch.testing.assert_close(render_rays(truth, o, d, occ, bg).colors, render_rays(truth, o, d, full, bg).colors,
                               atol=0.05, rtol=0)


def test_density_control_clone_split_prune_reset():
    g = torch.Generator().manual_seed(0)
    model = GaussianModel.random_init(6, 1.0, g, opacity=0.5)
    with torch.no_grad():
        model.log_scales[:3] = math.log(0.001)  # small -> clone
        model.log_scales[3:] = math.log(0.05)  # large -> split
        model.opacity_logits[5] = -10.0  # transparent -> pruned
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    r = render_gaussians(model, *_camera_pair(), 16, 16, 3, torch.ones(3))  # degree 3: every parameter gets a grad
    r.image.sum().backward()
    opt.step()
    dc = DensityControl(extent=1.0, grad_threshold=0.0)
    dc.accumulate(len(model), torch.arange(6), torch.ones(6, 2), 16, 16)
    stats = dc.densify_and_prune(model, opt, g)
    # 3 clones + 3 parents split into 6 children (one of them transparent, pruned with its twin)
    assert stats["cloned"] == 3 and stats["split"] == 3
    assert len(model) == 6 + 3 + 6 - 3 - stats["pruned"] and stats["pruned"] == 2
    for p in model.parameters():  # Adam state follows the edits
        assert opt.state[p]["exp_avg"].shape == p.shape
    dc.reset_opacity(model, opt)
    assert float(model.opacities.detach().max()) <= 0.0100001


def _camera_pair():
    cam = Camera.look_at(torch.tensor([0.0, 0.0, 4.0]), torch.zeros(3), width=16, height=16)
    return cam.world_to_cam[0], cam.K[0]
