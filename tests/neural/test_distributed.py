"""Data-parallel NeRF and 3DGS training on 2 gloo processes match one process with the same global batch."""
import os

import pytest
import torch
import torch.multiprocessing as mp

from lumigrad.tasks.nerf import NerfConfig, train_nerf

_CFG = dict(iterations=3, occ_resolution=8, init_rays=64, samples_per_batch=2048, max_rays=256, n_levels=4,
            log2_table_size=10, max_res=32, hidden=16, eval_views_periodic=1, eval_every=1000, checkpoint_every=1000)


def _worker(rank, world, init_file, data, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LUMIGRAD_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train_nerf(data, out, NerfConfig(**_CFG))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_match_single_process(tiny_dataset, tmp_path):
    data = tiny_dataset(tmp_path / "data", n=6)
    mp.spawn(_worker, args=(2, str(tmp_path / "pg"), data, tmp_path / "ddp"), nprocs=2, join=True)
    train_nerf(data, tmp_path / "single", NerfConfig(**_CFG))
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)
    # the tables start within 1e-4 of zero: they moved, so the comparison is not vacuous
    assert float(b["encoding.table"].abs().max()) > 1e-3


_SPLAT_CFG = dict(iterations=4, batch_views=2, init="random", init_points=64, init_extent=0.8, init_opacity=0.5,
                  sh_degree=1, sh_every=2, densify_from=2, densify_every=2, grad_threshold=1e-9, max_gaussians=200,
                  eval_every=1000, eval_views_periodic=1, checkpoint_every=1000)


def _splat_worker(rank, world, init_file, data, out):
    from lumigrad.tasks.splat import SplatConfig, train_splat

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LUMIGRAD_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train_splat(data, out, SplatConfig(**_SPLAT_CFG))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_splat_two_ranks_match_single_process(tiny_dataset, tmp_path):
    from lumigrad.tasks.splat import SplatConfig, train_splat

    data = tiny_dataset(tmp_path / "data", n=6, size=24)
    mp.spawn(_splat_worker, args=(2, str(tmp_path / "pg"), data, tmp_path / "ddp"), nprocs=2, join=True)
    train_splat(data, tmp_path / "single", SplatConfig(**_SPLAT_CFG))
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    start = _initial_means(_SPLAT_CFG)
    # densification ran (same edits on both), and the means moved: the comparison is not vacuous
    assert b["model"]["means"].shape[0] > _SPLAT_CFG["init_points"]
    assert float((b["model"]["means"][: start.shape[0]] - start).abs().max()) > 1e-5
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4)


def _initial_means(cfg):
    """The initial means ``train_splat`` draws for ``init='random'`` (same seed and order)."""
    from lumigrad.fields.gaussians import GaussianModel

    gen = torch.Generator().manual_seed(0)
    return GaussianModel.random_init(cfg["init_points"], cfg["init_extent"], gen, cfg["init_opacity"]).means.detach()
