"""A/B of the binary BVH query vs the 4-wide one, in one process (single thread, ``time.thread_time``).

Scenes and rays as ``bench/bvh.py`` (icospheres over a floor, random-order camera rays, shadow rays from their
hits to the light); also the build and refit (wall ms). Rounds alternate binary / 4-wide; medians and the
median paired ratio (4-wide / binary) are printed.

Level -1: ``bench/trace_gi.py``'s Cornell box (36 triangles) with path-like rays (random origins inside the box,
random directions; shadow rays from their hits to the ceiling light's centre).

Usage: ``PYTHONPATH=. python bench/bvh4_ab.py [--levels -1 4 6 8] [--res 512] [--reps 5]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--levels", type=int, nargs="+", default=[4, 6, 8])
ap.add_argument("--res", type=int, default=512)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--simd", action="store_true", help="B: 4-wide nodes and SIMD leaves")
ap.add_argument("--simd2", action="store_true", help="B: binary nodes and SIMD leaves")
ARGS = ap.parse_args()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import warp as wp  # noqa: E402

torch.set_num_threads(2)

from lumigrad._runtime.launch import _ensure_init  # noqa: E402
from lumigrad.ops import _bvh, _bvh4  # noqa: E402
from lumigrad.ops import _bvh4_kernels as _k4  # noqa: E402
from lumigrad.ops import _bvh_kernels as _bk  # noqa: E402

wp.set_module_options({"enable_backward": False, "optimization_level": 3})
if os.environ.get("LG_FLAGS"):
    wp.set_module_options({"cpu_compiler_flags": os.environ["LG_FLAGS"]})
_B4C = _k4.bvh4s_closest if ARGS.simd else _k4.bvh4_closest
_B4C = _k4.bvh2s_closest if ARGS.simd2 else _B4C
_NODE, _KID = (wp.vec3, wp.vec2i) if ARGS.simd2 else (wp.vec4, wp.vec4i)
_TRI = wp.vec4 if ARGS.simd or ARGS.simd2 else wp.vec3
_B4A = _k4.bvh2s_anyhit if ARGS.simd2 else _k4.bvh4s_anyhit if ARGS.simd else _k4.bvh4_anyhit


@wp.kernel
def b2_closest(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
               tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
               face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
    i = wp.tid()
    f, tt = _bk.bvh_closest(nodes, kids, tris, tface, o[i], d[i], 3.0e38)
    face[i] = f
    t[i] = tt


@wp.kernel
def b4_closest(nodes: wp.array(dtype=_NODE), kids: wp.array(dtype=_KID), tris: wp.array(dtype=_TRI),
               tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
               face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
    i = wp.tid()
    f, tt = _B4C(nodes, kids, tris, tface, o[i], d[i], 3.0e38)
    face[i] = f
    t[i] = tt


@wp.kernel
def b2_any(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
           o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3), tmax: wp.array(dtype=float),
           hit: wp.array(dtype=wp.int32)):
    i = wp.tid()
    hit[i] = wp.where(_bk.bvh_anyhit(nodes, kids, tris, o[i], d[i], tmax[i]), 1, 0)


@wp.kernel
def b4_any(nodes: wp.array(dtype=_NODE), kids: wp.array(dtype=_KID), tris: wp.array(dtype=_TRI),
           o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3), tmax: wp.array(dtype=float),
           hit: wp.array(dtype=wp.int32)):
    i = wp.tid()
    hit[i] = wp.where(_B4A(nodes, kids, tris, o[i], d[i], tmax[i]), 1, 0)


def cornell_rays(res: int):
    """The Cornell box of ``bench/trace_gi.py`` (36 triangles); path-like rays: random origins inside the box,
    random directions; the 'light' is the ceiling light's centre."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "validation"))
    from mitsuba_scenes import cornell_box

    shapes, _, _ = cornell_box(16)
    vs, fs, n = [], [], 0
    for sh in shapes:
        vs.append(sh.mesh.verts.float())
        fs.append(sh.mesh.faces + n)
        n += sh.mesh.verts.shape[0]
    g = torch.Generator().manual_seed(0)
    o = (torch.rand(res * res, 3, generator=g) * 1.9 - 0.95).contiguous()
    d = torch.randn(res * res, 3, generator=g)
    d = (d / d.norm(dim=1, keepdim=True)).contiguous()
    return torch.cat(vs).contiguous(), torch.cat(fs).int().contiguous(), o, d, torch.tensor([0.0, 0.98, 0.0])


def rays(level: int, res: int):
    if level < 0:
        return cornell_rays(res)
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import raytrace as rt
    finally:
        sys.argv = argv
    shapes, cam, lights = rt.scene(level, res)
    g = torch.Generator().manual_seed(0)
    pix = torch.rand(res * res, 2, generator=g) * res
    o, d = rt._camera_rays(cam, torch.zeros(res * res, dtype=torch.long), pix)
    v = torch.cat([s.mesh.verts for s in shapes]).float().contiguous()
    f = torch.cat([shapes[0].mesh.faces, shapes[1].mesh.faces + shapes[0].mesh.verts.shape[0]]).int().contiguous()
    return v, f, o.float().contiguous(), d.float().contiguous(), lights[0].position.float()


def _w(t, dtype=None):
    return wp.from_torch(t, dtype=dtype) if dtype else wp.from_torch(t)


def thread_ns(fn, n):
    c = time.thread_time()
    fn()
    return 1e9 * (time.thread_time() - c) / n


def wall_ms(fn):
    t = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t)


def run(level):
    v, f, o, d, light = rays(level, ARGS.res)
    r = o.shape[0]
    b2 = _bvh.BVHData(v, f.reshape(-1))
    B4 = _bvh4.BVH2SData if ARGS.simd2 else _bvh4.BVH4SData if ARGS.simd else _bvh4.BVH4Data
    b4 = B4(v, f.reshape(-1))
    a2 = [a.to_array() for a in b2.args()]
    a4 = [a.to_array() for a in b4.args()]
    ow, dw = _w(o, wp.vec3), _w(d, wp.vec3)
    out = {k: (torch.empty(r, dtype=torch.int32), torch.empty(r)) for k in (2, 4)}
    cl = {2: lambda: wp.launch(b2_closest, r, [*a2, ow, dw, _w(out[2][0]), _w(out[2][1])], device="cpu"),
          4: lambda: wp.launch(b4_closest, r, [*a4, ow, dw, _w(out[4][0]), _w(out[4][1])], device="cpu")}
    cl[2]()
    cl[4]()
    f2, t2 = out[2]
    m = f2 >= 0
    p = o[m] + t2[m, None] * d[m]
    dv = light - p
    dist = dv.norm(dim=1)
    sd = (dv / dist[:, None]).contiguous()
    so = (p + 1e-4 * sd).contiguous()
    stm = (dist - 2e-4).clamp_min(0).contiguous()
    ns = so.shape[0]
    hit = {k: torch.empty(ns, dtype=torch.int32) for k in (2, 4)}
    sw = [_w(so, wp.vec3), _w(sd, wp.vec3), _w(stm)]
    an = {2: lambda: wp.launch(b2_any, ns, [*a2[:3], *sw, _w(hit[2])], device="cpu"),
          4: lambda: wp.launch(b4_any, ns, [*a4[:3], *sw, _w(hit[4])], device="cpu")}
    an[2]()
    an[4]()
    same = float((out[2][0] == out[4][0]).float().mean()) * 100
    same_any = int((hit[2] != hit[4]).sum())
    tim = {k: [] for k in ("cl2", "cl4", "an2", "an4", "bu2", "bu4", "rf2", "rf4")}
    for _ in range(ARGS.reps):
        for w in (2, 4):
            tim[f"cl{w}"].append(thread_ns(cl[w], r))
            tim[f"an{w}"].append(thread_ns(an[w], ns))
        tim["bu2"].append(wall_ms(lambda: _bvh.BVHData(v, f.reshape(-1))))
        tim["bu4"].append(wall_ms(lambda: B4(v, f.reshape(-1))))
        tim["rf2"].append(wall_ms(b2.refit))
        tim["rf4"].append(wall_ms(b4.refit))
    med = {k: statistics.median(x) for k, x in tim.items()}
    rat = {k: statistics.median([b / a for a, b in zip(tim[k + "2"], tim[k + "4"])]) for k in ("cl", "an", "bu", "rf")}
    print(f"{'cornell' if level < 0 else f'icosphere-{level}'} F={f.shape[0]} depth4={len(b4.levels)} N2={b2.kids.shape[0]} N4={b4.kids.shape[0]} "
          f"same face {same:.3f}% any diff {same_any}")
    print(f"  closest ns {med['cl2']:.1f} -> {med['cl4']:.1f} (x{rat['cl']:.3f}); any ns {med['an2']:.1f} -> "
          f"{med['an4']:.1f} (x{rat['an']:.3f}); build ms {med['bu2']:.1f} -> {med['bu4']:.1f}; "
          f"refit ms {med['rf2']:.2f} -> {med['rf4']:.2f}", flush=True)


if __name__ == "__main__":
    _ensure_init()
    for lv in ARGS.levels:
        run(lv)
