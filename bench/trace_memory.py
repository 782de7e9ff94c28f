"""Peak memory and time of path-traced fwd+bwd with and without path replay (``TraceSettings.replay``).

Each configuration runs in a fresh subprocess; the figure is the process's peak resident set size
(``ru_maxrss``) minus the RSS after importing and building the scene (the baseline). The scene is
the GI-material task's Cornell box (float32, 3 bounces, MIS, gradients w.r.t. albedo, base colour,
roughness and the sphere's vertices).

    PYTHONPATH=. python bench/trace_memory.py            # table to stdout
    PYTHONPATH=. python bench/trace_memory.py --quick    # smaller set
    PYTHONPATH=. python bench/trace_memory.py --only 512 64 --replay-only --chunk 65536

Children run with ``OMP_WAIT_POLICY=PASSIVE`` unless it is set (why: ``bench/raytrace.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from lumigrad.tasks.gi_material import build_scene
from lumigrad.render.path import render_trace, prepare_trace
from lumigrad.scene.trace_types import TraceSettings
res, spp, replay, bounces, chunk = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(2)
wall = torch.full((3,), 0.5, requires_grad=True); base = torch.full((3,), 0.5, requires_grad=True)
rough = torch.tensor([0.4], requires_grad=True)
shapes, cam = build_scene(wall, base, rough, res)
shapes[-1].mesh.verts.requires_grad_(True)
accel = prepare_trace(shapes)
# Warm-up: torch.utils.checkpoint's first call imports modules (about 70 MB of RSS); keep that out of the figure.
from torch.utils.checkpoint import checkpoint
x = torch.ones(2, requires_grad=True)
checkpoint(lambda a: a * 2, x, use_reentrant=False).sum().backward()
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
img = render_trace(shapes, cam, [], TraceSettings(spp=spp, max_bounces=bounces, boundary="none", replay=replay, chunk_rays=chunk), accel=accel).image
t_f = time.perf_counter() - t
img.square().mean().backward()
t_all = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"res": res, "spp": spp, "replay": replay, "bounces": bounces, "peak_mb": (peak - base_rss) / 1024,
                  "fwd_s": t_f, "fwd_bwd_s": t_all, "grad_norm": float(wall.grad.norm())}))
"""


def run(res, spp, replay, bounces=3, chunk=4096):
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(res), str(spp), "1" if replay else "0", str(bounces), str(chunk)],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", type=int, nargs=2, metavar=("RES", "SPP"), help="run this one configuration")
    ap.add_argument("--replay-only", action="store_true", help="skip the runs without replay")
    ap.add_argument("--chunk", type=int, default=4096, help="TraceSettings.chunk_rays (default 4096)")
    args = ap.parse_args()
    configs = [(32, 4), (32, 16), (32, 64)] if args.quick else [(64, 4), (64, 16), (64, 64), (128, 64), (512, 4)]
    if args.only:
        configs = [tuple(args.only)]
    rows = []
    print("| res | spp | bounces | chunk_rays | replay | extra peak RSS MB | fwd s | fwd+bwd s |")
    print("|---|---|---|---|---|---|---|---|")
    for res, spp in configs:
        for replay in (True,) if args.replay_only else (False, True):
            r = run(res, spp, replay, chunk=args.chunk)
            rows.append(r)
            print(f"| {res}^2 | {spp} | {r['bounces']} | {args.chunk} | {replay} | {r['peak_mb']:.0f} | {r['fwd_s']:.1f} | "
                  f"{r['fwd_bwd_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
