"""Time-boxed quality runs: 3DGS and NeRF on a NeRF-synthetic-style folder, held-out PSNR vs time.

Runs ``train_splat`` / ``train_nerf`` with a wall-clock budget (``--minutes``,
default 10) and the recipe below, then prints and writes (``--out``/
``quality_<method>.json``) the held-out PSNR reached, the iterations, the
PSNR-vs-iteration history, and the machine load (``os.getloadavg``) sampled
every 10 s during the run, so that runs on loaded and quiet machines can be
told apart.

Usage::

    python bench/neural_quality.py splat /work/shared/data/nerf_synthetic_lego_200 --minutes 10
    python bench/neural_quality.py nerf  /work/shared/data/nerf_synthetic_lego_200 --minutes 10

``--set key=value`` overrides any field of the config (``SplatConfig`` /
``NerfConfig``), e.g. ``--set init_points=30000``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

# The 10-minute runs: the configs' defaults, time-boxed (iterations high so --minutes decides), more evals.
SPLAT_RECIPE = dict(iterations=100000, eval_every=250, checkpoint_every=2000)  # SplatConfig defaults otherwise
NERF_RECIPE = dict(iterations=100000, eval_every=200, eval_views_periodic=1, checkpoint_every=2000)


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("method", choices=["splat", "nerf"])
    p.add_argument("data")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2, help="kernel threads (LUMIGRAD_NUM_THREADS), default 2")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads (default 1: on a loaded 2-core machine more only adds contention)")
    p.add_argument("--out", default="out/quality")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    return p.parse_args()


def _value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def main() -> int:
    args = _parse()
    os.environ["LUMIGRAD_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.torch_threads)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    out = os.path.join(args.out, args.method)
    if args.method == "splat":
        from lumigrad.tasks.splat import SplatConfig as Config, train_splat as train
        recipe = dict(SPLAT_RECIPE)
    else:
        from lumigrad.tasks.nerf import NerfConfig as Config, train_nerf as train
        recipe = dict(NERF_RECIPE)
    recipe.update({k: _value(v) for k, v in overrides.items()})
    recipe["minutes"] = args.minutes
    config = Config(**recipe)
    loads, stop = [], threading.Event()

    def sample():
        while not stop.wait(10.0):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = train(args.data, out, config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stop.set()
    h = metrics["history"]
    result = {
        "method": args.method, "data": args.data, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
        "iterations": metrics["iterations"], "train_seconds": metrics["train_seconds"], "wall_seconds_total": wall,
        "process_cpu_seconds": cpu, "load_avg_1min_mean": sum(loads) / max(len(loads), 1),
        "load_avg_1min_max": max(loads, default=0.0), "cores": os.cpu_count(),
        "history": {"step": h["step"], "psnr": h["psnr"]}, "config": dataclasses.asdict(config),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"quality_{args.method}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"{args.method}: held-out PSNR {result['psnr']:.2f} dB after {result['iterations']} iterations, "
          f"{result['train_seconds']:.0f} s training ({wall:.0f} s total, {cpu:.0f} s CPU); "
          f"load avg mean {result['load_avg_1min_mean']:.2f} max {result['load_avg_1min_max']:.2f} on {os.cpu_count()} cores")
    for s, p in zip(h["step"], h["psnr"]):
        print(f"  step {s:6d}  PSNR {p:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
