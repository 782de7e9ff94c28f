"""A lower bound for a triangle rasterizer's per-triangle setup in Warp on this CPU.

One kernel gathers each triangle's three clip-space corners (the icosphere's vertex order, as every
rasterizer benchmark here), divides by w and takes the pixel box, writing one int per triangle:
no edge functions, depth plane, binning or drawing. Whatever `rasterize` does per triangle costs at
least this. Session 9: 16.8 ms for icosphere(8) (1.3M triangles) at 1024^2 on one thread, 12.8 ns a
triangle, against the 23 ms (two cores) that issue 9's W1 target (1/3 of DRTK's 68.6 ms) leaves for
the whole rasterization.

Usage: ``python bench/setup_floor.py [--level 8] [--res 1024] [--reps 9]`` (one thread, thread CPU time).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import warp as wp  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raster_w2 import clip_positions  # noqa: E402

from lumigrad.geometry import icosphere  # noqa: E402

wp.config.quiet = True
wp.init()
wp.set_module_options({"enable_backward": False, "optimization_level": 3})


@wp.kernel
def box_kernel(per: int, pos: wp.array(dtype=wp.vec4), tri: wp.array(dtype=wp.vec3i), hw: float, hh: float,
               out: wp.array(dtype=wp.int32)):
    c = wp.tid()
    for t in range(c * per, wp.min((c + 1) * per, tri.shape[0])):
        f = tri[t]
        a = pos[f[0]]
        b = pos[f[1]]
        d = pos[f[2]]
        ax = a[0] / a[3]
        ay = a[1] / a[3]
        bx = b[0] / b[3]
        by = b[1] / b[3]
        dx = d[0] / d[3]
        dy = d[1] / d[3]
        x0 = int(wp.ceil((wp.min(ax, wp.min(bx, dx)) + 1.0) * hw - 0.5))
        x1 = int(wp.floor((wp.max(ax, wp.max(bx, dx)) + 1.0) * hw - 0.5))
        y0 = int(wp.ceil((wp.min(ay, wp.min(by, dy)) + 1.0) * hh - 0.5))
        y1 = int(wp.floor((wp.max(ay, wp.max(by, dy)) + 1.0) * hh - 0.5))
        out[t] = wp.where(x0 <= x1 and y0 <= y1, 1, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--level", type=int, default=8)
    p.add_argument("--res", type=int, default=1024)
    p.add_argument("--reps", type=int, default=9)
    a = p.parse_args()
    v, f = icosphere(a.level)
    pos = clip_positions(v.numpy())[0].contiguous()
    tri = f.int().contiguous()
    out = torch.empty(tri.shape[0], dtype=torch.int32)
    per = 4096
    args = [per, wp.from_torch(pos, dtype=wp.vec4), wp.from_torch(tri, dtype=wp.vec3i), a.res / 2.0, a.res / 2.0,
            wp.from_torch(out)]
    dim = (tri.shape[0] + per - 1) // per
    wp.launch(box_kernel, dim=dim, inputs=args, device="cpu")
    ts = []
    for _ in range(a.reps):
        t0 = time.thread_time()
        wp.launch(box_kernel, dim=dim, inputs=args, device="cpu")
        ts.append(time.thread_time() - t0)
    med = statistics.median(ts)
    print(f"icosphere({a.level}), {tri.shape[0]} triangles, {a.res}^2: pixel boxes only {1e3 * med:.1f} ms on one "
          f"thread ({1e9 * med / tri.shape[0]:.1f} ns a triangle); {int(out.sum())} boxes hold a pixel centre")


if __name__ == "__main__":
    main()
