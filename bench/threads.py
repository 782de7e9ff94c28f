"""Thread settings: lumigrad's launch pool vs torch's intra-op (OpenMP) pool on a fit-like loop.

Runs the same workload (silhouette fit steps: rasterize + antialias + soft
rasterize, image and mesh losses, Adam) in fresh processes under several thread
settings, from 1 and from 4 Python threads, and prints wall time and CPU time
(user + sys; spinning OpenMP workers show up as CPU time that does no work).
Usage: python bench/threads.py [--iters N] [--repeats R]. See docs/threads.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, os, resource, sys, threading, time
import torch
if os.environ.get("BENCH_TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
from lumigrad import Camera
from lumigrad.geometry.primitives import icosphere
from lumigrad.losses import laplacian_smoothing, mse
from lumigrad.render import RasterSettings, render_silhouette

iters, callers = int(sys.argv[1]), int(sys.argv[2])
verts, faces = icosphere(3)
eye = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.1], [-3.0, 0.0, 0.0]])
cam = Camera.look_at(eye, torch.zeros(4, 3), width=96, height=96)
target = render_silhouette(verts * torch.tensor([1.0, 0.7, 0.9]), faces, cam)

def loop(n):
    v = (verts * 0.8).clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=1e-2)
    for _ in range(n):
        opt.zero_grad()
        loss = mse(render_silhouette(v, faces, cam), target)
        loss = loss + mse(render_silhouette(v, faces, cam, RasterSettings(visibility="soft")), target)
        (loss + 0.1 * laplacian_smoothing(v, faces)).backward()
        opt.step()

loop(1)  # warm-up: kernels loaded
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
ts = [threading.Thread(target=loop, args=(iters,)) for _ in range(callers)]
[t.start() for t in ts]; [t.join() for t in ts]
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
threads = int([l for l in open("/proc/self/status") if l.startswith("Threads:")][0].split()[1])
print(json.dumps({"wall": t1 - t0, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), "threads": threads}))
"""

CONFIGS = {
    "default (both pools = torch.get_num_threads())": {},
    "torch intra-op 1 thread, lumigrad pool = cores": {"BENCH_TORCH_THREADS": "1", "LUMIGRAD_NUM_THREADS": str(os.cpu_count())},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "lumigrad pool 1 thread": {"LUMIGRAD_NUM_THREADS": "1"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--callers", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    env0 = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    results: dict = {}
    for rep in range(args.repeats):  # interleaved, so load changes hit every config alike
        for callers in args.callers:
            for name, extra in CONFIGS.items():
                out = subprocess.run([sys.executable, "-c", WORKER, str(args.iters), str(callers)],
                                     env={**env0, **extra}, capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((callers, name), []).append(r)
    print(f"cores: {os.cpu_count()}, iterations per caller: {args.iters}, repeats: {args.repeats} (median)")
    print(f"{'callers':>7}  {'setting':<48} {'wall s':>7} {'cpu s':>7}  {'wall/default':>12} {'OS threads':>10}")
    for callers in args.callers:
        base = None
        for name in CONFIGS:
            rs = results[(callers, name)]
            wall = sorted(r["wall"] for r in rs)[len(rs) // 2]
            cpu = sorted(r["cpu"] for r in rs)[len(rs) // 2]
            base = base or wall
            print(f"{callers:>7}  {name:<48} {wall:7.2f} {cpu:7.2f}  {wall / base:12.2f} {rs[0]['threads']:>10}")


if __name__ == "__main__":
    main()
