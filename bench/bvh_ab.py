"""A/B of this tree's BVH against another checkout's (default ``/work/main``), in one process, single thread.

Both trees' ``lumigrad`` are loaded side by side (the other one renamed ``lumigrad_base`` by
``bench/_base_tree.copy_base``). Rounds alternate base / this tree; medians and the median of the paired ratios
(this / base: < 1 is faster) are printed.

* Queries (``time.thread_time``, ns per ray): ``bench/bvh.py``'s icospheres over a floor (``--levels``; random-order
  camera rays, shadow rays from their hits to the light) and, as level -1, the Cornell box of
  ``bench/trace_gi.py`` (36 triangles) with path-like rays (random origins inside the box, random directions;
  shadow rays from their hits to the ceiling light's centre). Also ``BVHData`` build and refit (wall ms).
* ``--path``: the Cornell box path tracer forward (``render_trace``, 64^2, 16 spp, 3 bounces, float32, one
  thread, ``time.thread_time`` ms), the fused path kernel of each tree.

Usage: ``PYTHONPATH=. python bench/bvh_ab.py [--base /work/main] [--levels -1 4 6 8] [--res 512] [--reps 5] [--path]``.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "validation"))

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--base", default="/work/main")
ap.add_argument("--levels", type=int, nargs="*", default=[-1, 4, 6, 8])
ap.add_argument("--res", type=int, default=512)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--path", action="store_true", help="also the Cornell box path tracer forward")
ap.add_argument("--path-reps", type=int, default=15)
ARGS = ap.parse_args()
os.environ["LUMIGRAD_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _base_tree import copy_base  # noqa: E402

sys.path.insert(0, copy_base(ARGS.base, "lumigrad_bvh_ab_"))

import torch  # noqa: E402
import warp as wp  # noqa: E402

torch.set_num_threads(1)

import lumigrad_base.ops._bvh as base_bvh  # noqa: E402
import lumigrad_base.ops._bvh_kernels as base_k  # noqa: E402

from lumigrad._runtime.launch import _ensure_init  # noqa: E402
from lumigrad.ops import _bvh as new_bvh  # noqa: E402
from lumigrad.ops import _bvh_kernels as new_k  # noqa: E402

OPTIONS = {"enable_backward": False, "optimization_level": 3}  # as lumigrad's kernel modules


def _kernels(k, tri_t):
    """Closest / any-hit kernels over one tree's query functions (``tri_t``: its ``tris`` element type)."""

    @wp.kernel(module="unique", module_options=OPTIONS)
    def closest(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=tri_t),
                tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
                face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
        i = wp.tid()
        f, tt = k.bvh_closest(nodes, kids, tris, tface, o[i], d[i], 3.0e38)
        face[i] = f
        t[i] = tt

    @wp.kernel(module="unique", module_options=OPTIONS)
    def anyhit(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=tri_t),
               o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3), tmax: wp.array(dtype=float),
               hit: wp.array(dtype=wp.int32)):
        i = wp.tid()
        hit[i] = wp.where(k.bvh_anyhit(nodes, kids, tris, o[i], d[i], tmax[i]), 1, 0)

    return closest, anyhit


def _tri_type(mod):
    return wp.vec4 if hasattr(mod, "LEAF_ROWS") else wp.vec3


KERNELS = {"base": _kernels(base_k, _tri_type(base_k)), "new": _kernels(new_k, _tri_type(new_k))}
BVH = {"base": base_bvh.BVHData, "new": new_bvh.BVHData}


def cornell_geometry():
    from mitsuba_scenes import cornell_box

    shapes, _, _ = cornell_box(16)
    vs, fs, n = [], [], 0
    for sh in shapes:
        vs.append(sh.mesh.verts.float())
        fs.append(sh.mesh.faces + n)
        n += sh.mesh.verts.shape[0]
    return torch.cat(vs).contiguous(), torch.cat(fs).int().contiguous()


def rays(level: int, res: int):
    """``(verts, faces, origins, dirs, light position)`` of one scene."""
    if level < 0:
        v, f = cornell_geometry()
        g = torch.Generator().manual_seed(0)
        o = (torch.rand(res * res, 3, generator=g) * 1.9 - 0.95).contiguous()
        d = torch.randn(res * res, 3, generator=g)
        return v, f, o, (d / d.norm(dim=1, keepdim=True)).contiguous(), torch.tensor([0.0, 0.98, 0.0])
    argv, sys.argv = sys.argv, sys.argv[:1]  # bvh.py parses the command line when imported
    try:
        import bvh  # bench/bvh.py's scenes and camera rays
    finally:
        sys.argv = argv
    return bvh.rays(level, res)


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


def _ratios(tim, key):
    return statistics.median([b / a for a, b in zip(tim[key + " base"], tim[key + " new"])])


def bench_queries(level):
    v, f, o, d, light = rays(level, ARGS.res)
    r = o.shape[0]
    bvh = {k: BVH[k](v, f.reshape(-1)) for k in BVH}
    args = {k: [a.to_array() for a in b.args()] for k, b in bvh.items()}
    ow, dw = _w(o, wp.vec3), _w(d, wp.vec3)
    out = {k: (torch.empty(r, dtype=torch.int32), torch.empty(r)) for k in BVH}

    def closest(k):
        return lambda: wp.launch(KERNELS[k][0], r, [*args[k], ow, dw, _w(out[k][0]), _w(out[k][1])], device="cpu")

    closest("base")()
    closest("new")()
    fb, tb = out["base"]
    m = fb >= 0
    p = o[m] + tb[m, None] * d[m]
    dv = light - p
    dist = dv.norm(dim=1)
    sd = (dv / dist[:, None]).contiguous()
    so = (p + 1e-4 * sd).contiguous()
    stm = (dist - 2e-4).clamp_min(0).contiguous()
    ns = so.shape[0]
    sw = [_w(so, wp.vec3), _w(sd, wp.vec3), _w(stm)]
    hit = {k: torch.empty(ns, dtype=torch.int32) for k in BVH}

    def anyhit(k):
        return lambda: wp.launch(KERNELS[k][1], ns, [*args[k][:3], *sw, _w(hit[k])], device="cpu")

    anyhit("base")()
    anyhit("new")()
    fn, tn = out["new"]
    diff = fb != fn
    both = diff & (fb >= 0) & (fn >= 0)
    gap = float(((tb[both] - tn[both]).abs() / tb[both].abs()).max()) if both.any() else 0.0
    tim = {f"{q} {k}": [] for q in ("closest ns", "any ns", "build ms", "refit ms") for k in BVH}
    for _ in range(ARGS.reps):
        for k in BVH:
            tim[f"closest ns {k}"].append(thread_ns(closest(k), r))
            tim[f"any ns {k}"].append(thread_ns(anyhit(k), ns))
            tim[f"build ms {k}"].append(wall_ms(lambda: BVH[k](v, f.reshape(-1))))
            tim[f"refit ms {k}"].append(wall_ms(bvh[k].refit))
    name = "cornell" if level < 0 else f"icosphere-{level}"
    cells = [f"{statistics.median(tim[q + ' base']):.1f} -> {statistics.median(tim[q + ' new']):.1f} "
             f"(x{_ratios(tim, q):.3f})" for q in ("closest ns", "any ns", "build ms", "refit ms")]
    print(f"| {name} | {f.shape[0]} | " + " | ".join(cells) + f" | {int(diff.sum())} ({int((diff & ~both).sum())}) | "
          f"{gap:.2g} | {int((hit['base'] != hit['new']).sum())} |", flush=True)


def bench_path():
    import lumigrad.render.path as new_path
    import lumigrad_base.render.path as base_path
    from mitsuba_scenes import cornell_box

    from dataclasses import fields

    shapes64, cam64, _ = cornell_box(64)
    cam_new = cam64.to(dtype=torch.float32)
    runs = {}
    for k, pkg in (("base", "lumigrad_base"), ("new", "lumigrad")):
        path = base_path if k == "base" else new_path
        Mesh = sys.modules[pkg + ".scene"].Mesh
        mats = __import__(pkg + ".scene.materials", fromlist=["LambertMaterial"])
        tt = __import__(pkg + ".scene.trace_types", fromlist=["Shape", "TraceSettings"])
        shapes = []
        for s in shapes64:
            a = s.material.albedo
            a = a.float() if isinstance(a, torch.Tensor) else a
            shapes.append(tt.Shape(Mesh(s.mesh.verts.float(), s.mesh.faces), mats.LambertMaterial(a),
                                   None if s.emission is None else s.emission.float()))
        Camera = sys.modules[pkg + ".scene"].Camera
        cam = Camera(**{fl.name: getattr(cam_new, fl.name) for fl in fields(cam_new) if fl.init})
        st = tt.TraceSettings(spp=16, max_bounces=3, boundary="none")
        accel = path.prepare_trace(shapes)
        runs[k] = (lambda p=path, sh=shapes, c=cam, s=st, a=accel: p.render_trace(sh, c, [], s, accel=a).image)
    imgs = {k: f() for k, f in runs.items()}
    tim = {f"fwd ms {k}": [] for k in runs}
    for _ in range(ARGS.path_reps):
        for k, f in runs.items():
            tim[f"fwd ms {k}"].append(thread_ns(f, 1) / 1e6)
    print(f"\nCornell box path tracer forward, 64^2 x 16 spp, 3 bounces, 1 thread (thread ms): "
          f"{statistics.median(tim['fwd ms base']):.1f} -> {statistics.median(tim['fwd ms new']):.1f} "
          f"(paired x{_ratios(tim, 'fwd ms'):.3f}); image max |diff| "
          f"{float((imgs['base'] - imgs['new']).abs().max()):.3g}, mean {float(imgs['new'].mean()):.4f}")


def main():
    _ensure_init()
    if ARGS.levels:
        print(f"res {ARGS.res}^2 rays, 1 thread; base -> new (median paired ratio new / base)\n")
        print("| case | F | closest ns | any ns | build ms | refit ms | diff faces (hit/miss) | diff gap | diff any |")
        print("|---|---|---|---|---|---|---|---|---|")
        for lv in ARGS.levels:
            bench_queries(lv)
    if ARGS.path:
        bench_path()


if __name__ == "__main__":
    main()
