"""Ray query benchmark: lumigrad's BVH (:mod:`lumigrad.ops._bvh`) vs Warp's ``wp.Mesh``, side by side in one run.

Scene: ``bench/raytrace.py``'s icosphere (5k / 82k / 1.3M triangles) over a floor plane, one point light.
Rays: ``res^2`` camera rays (one jittered sample per pixel, in random pixel order, so that consecutive
rays are not coherent), and for the shadow rays, from each camera ray's closest hit towards the light
(stepped off the surface as the renderer does). Columns:

* ``warp cl ns``, ``lg cl ns``: single-thread CPU ns per closest-hit query (``wp.mesh_query_ray`` on an
  SAH ``wp.Mesh``; :func:`lumigrad.ops._bvh_kernels.bvh_closest`), one launch on the calling thread,
  timed with ``time.thread_time`` (CPU time of this thread: other jobs on a shared machine change it
  little). ``cl x``: Warp / lumigrad.
* ``warp any ns``, ``lg any ns``, ``any x``: the same for the shadow rays' any-hit queries.
* ``warp build ms``, ``lg build ms``: ``wp.Mesh(..., bvh_constructor="sah")`` vs ``BVHData(...)`` (wall ms,
  Warp's CPU build is single threaded; lumigrad's torch ops use ``--threads``).
* ``warp refit ms``, ``lg refit ms``: ``wp.Mesh.refit()`` vs ``BVHData.refit()`` (wall ms).
* ``same face %``, ``diff faces``: closest hits with the same face id in both (misses included), and the
  number that differ; ``diff hit/miss``: of those, how many are a hit in one and a miss in the other;
  ``diff gap``: the largest relative difference of ``t`` between the two faces picked (a tie: ~0); ``max rel dt``: the largest relative difference of ``t`` where the faces agree;
  ``any same %``, ``diff any``: shadow rays with the same answer, and the number that differ.

Timing: A and B alternate (warp, lumigrad, warp, ...) ``--reps`` times; medians are reported.

Usage: ``python bench/bvh.py [--levels 4 6 8] [--res 512] [--reps 5] [--out table.md]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--levels", type=int, nargs="+", default=[4, 6, 8], help="icosphere subdivisions (default 4 6 8)")
    p.add_argument("--res", type=int, default=512, help="camera rays: res^2 (default 512)")
    p.add_argument("--reps", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--threads", type=int, default=2, help="threads for the builds' torch ops")
    p.add_argument("--leaf", type=int, default=None, help="lumigrad leaf size (default: the library's)")
    p.add_argument("--out", help="also write the table as markdown to this file")
    return p.parse_args()


ARGS = _parse()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench/raytrace.py: idle torch workers must not spin

import torch  # noqa: E402
import warp as wp  # noqa: E402

torch.set_num_threads(ARGS.threads)

from lumigrad._runtime.launch import _ensure_init  # noqa: E402
from lumigrad.ops import _bvh  # noqa: E402
from lumigrad.ops import _bvh_kernels as _bk  # noqa: E402

wp.set_module_options({"enable_backward": False, "optimization_level": 3})


@wp.kernel
def warp_closest(mesh: wp.uint64, o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3), tmax: wp.array(dtype=float),
                 face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
    i = wp.tid()
    q = wp.mesh_query_ray(mesh, o[i], d[i], tmax[i])
    if q.result:
        face[i] = q.face
        t[i] = q.t
    else:
        face[i] = -1
        t[i] = tmax[i]


@wp.kernel
def warp_any(mesh: wp.uint64, o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3), tmax: wp.array(dtype=float),
             hit: wp.array(dtype=wp.int32)):
    i = wp.tid()
    hit[i] = wp.where(wp.mesh_query_ray_anyhit(mesh, o[i], d[i], tmax[i]), 1, 0)


@wp.kernel
def lg_closest(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
               tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
               tmax: wp.array(dtype=float), face: wp.array(dtype=wp.int32), t: wp.array(dtype=float)):
    i = wp.tid()
    f, tt = _bk.bvh_closest(nodes, kids, tris, tface, o[i], d[i], tmax[i])
    face[i] = f
    t[i] = tt


@wp.kernel
def lg_any(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
           tface: wp.array(dtype=wp.int32), o: wp.array(dtype=wp.vec3), d: wp.array(dtype=wp.vec3),
           tmax: wp.array(dtype=float), hit: wp.array(dtype=wp.int32)):
    i = wp.tid()
    hit[i] = wp.where(_bk.bvh_anyhit(nodes, kids, tris, o[i], d[i], tmax[i]), 1, 0)


def _w(t, dtype=None):
    return wp.from_torch(t, dtype=dtype) if dtype else wp.from_torch(t)


def rays(level: int, res: int):
    argv, sys.argv = sys.argv, sys.argv[:1]  # raytrace.py parses the command line when imported
    try:
        import raytrace as rt  # bench/raytrace.py's scene
    finally:
        sys.argv = argv

    shapes, cam, lights = rt.scene(level, res)
    g = torch.Generator().manual_seed(0)
    pix = torch.rand(res * res, 2, generator=g) * res
    o, d = rt._camera_rays(cam, torch.zeros(res * res, dtype=torch.long), pix)
    v = torch.cat([s.mesh.verts for s in shapes]).float().contiguous()
    f = torch.cat([shapes[0].mesh.faces, shapes[1].mesh.faces + shapes[0].mesh.verts.shape[0]]).int().contiguous()
    return v, f, o.float().contiguous(), d.float().contiguous(), lights[0].position.float()


def thread_ns(fn, n: int) -> float:
    c = time.thread_time()
    fn()
    return 1e9 * (time.thread_time() - c) / n


def wall_ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t)


def bench_level(level: int) -> dict:
    v, f, o, d, light = rays(level, ARGS.res)
    nf, r = int(f.shape[0]), int(o.shape[0])
    pts, idx = _w(v, wp.vec3), _w(f.reshape(-1))
    mesh = wp.Mesh(points=pts, indices=idx, bvh_constructor="sah")
    bvh = _bvh.BVHData(v, f.reshape(-1), **({"leaf_size": ARGS.leaf} if ARGS.leaf else {}))
    big = torch.full((r,), 3.0e38)
    out = {k: (torch.empty(r, dtype=torch.int32), torch.empty(r)) for k in ("w", "l")}
    hit = {k: torch.empty(r, dtype=torch.int32) for k in ("w", "l")}
    ow, dw, bw = _w(o, wp.vec3), _w(d, wp.vec3), _w(big)

    def w_cl():
        wp.launch(warp_closest, r, [mesh.id, ow, dw, bw, _w(out["w"][0]), _w(out["w"][1])], device="cpu")

    def l_cl():
        wp.launch(lg_closest, r, [*[a.to_array() for a in bvh.args()], ow, dw, bw, _w(out["l"][0]), _w(out["l"][1])],
                  device="cpu")

    w_cl()
    l_cl()
    # shadow rays from Warp's hits towards the light
    fw, tw = out["w"]
    m = fw >= 0
    p = o[m] + tw[m, None] * d[m]
    dv = light - p
    dist = dv.norm(dim=1)
    l = dv / dist[:, None]
    so = (p + 1e-4 * l).contiguous()
    sd = l.contiguous()
    st = (dist - 2e-4).clamp_min(0).contiguous()
    ns = int(so.shape[0])
    sow, sdw, stw = _w(so, wp.vec3), _w(sd, wp.vec3), _w(st)
    hit = {k: torch.empty(ns, dtype=torch.int32) for k in ("w", "l")}

    def w_any():
        wp.launch(warp_any, ns, [mesh.id, sow, sdw, stw, _w(hit["w"])], device="cpu")

    def l_any():
        wp.launch(lg_any, ns, [*[a.to_array() for a in bvh.args()][:3], bvh.args()[3].to_array(), sow, sdw, stw,
                               _w(hit["l"])], device="cpu")

    w_any()
    l_any()
    fl, tl = out["l"]
    same = fw == fl
    both = same & (fw >= 0)
    rel = ((tw[both] - tl[both]).abs() / tw[both].abs().clamp_min(1e-30)).max() if both.any() else torch.tensor(0.0)
    diff = ~same
    hm = int((diff & ((fw < 0) | (fl < 0))).sum())  # one query hit, the other missed
    both_d = diff & (fw >= 0) & (fl >= 0)
    gap = float(((tw[both_d] - tl[both_d]).abs() / tw[both_d]).max()) if both_d.any() else 0.0
    row = {"case": f"icosphere-{level}", "diff hit/miss": hm, "diff gap": gap, "F": nf, "rays": r, "same face %": 100.0 * float(same.float().mean()),
           "max rel dt": float(rel), "diff faces": int((~same).sum()), "diff any": int((hit["w"] != hit["l"]).sum()),
           "any same %": 100.0 * float((hit["w"] == hit["l"]).float().mean()),
           "shadowed %": 100.0 * float(hit["w"].float().mean())}
    tim = {k: [] for k in ("w_cl", "l_cl", "w_any", "l_any", "w_build", "l_build", "w_refit", "l_refit")}
    for _ in range(ARGS.reps):
        tim["w_cl"].append(thread_ns(w_cl, r))
        tim["l_cl"].append(thread_ns(l_cl, r))
        tim["w_any"].append(thread_ns(w_any, ns))
        tim["l_any"].append(thread_ns(l_any, ns))
        tim["w_build"].append(wall_ms(lambda: wp.Mesh(points=pts, indices=idx, bvh_constructor="sah")))
        tim["l_build"].append(wall_ms(lambda: _bvh.BVHData(v, f.reshape(-1))))
        tim["w_refit"].append(wall_ms(mesh.refit))
        tim["l_refit"].append(wall_ms(bvh.refit))
    med = {k: statistics.median(x) for k, x in tim.items()}
    row.update({"warp cl ns": med["w_cl"], "lg cl ns": med["l_cl"], "cl x": med["w_cl"] / med["l_cl"],
                "warp any ns": med["w_any"], "lg any ns": med["l_any"], "any x": med["w_any"] / med["l_any"],
                "warp build ms": med["w_build"], "lg build ms": med["l_build"],
                "warp refit ms": med["w_refit"], "lg refit ms": med["l_refit"]})
    return row


COLUMNS = ["case", "F", "warp cl ns", "lg cl ns", "cl x", "warp any ns", "lg any ns", "any x", "warp build ms",
           "lg build ms", "warp refit ms", "lg refit ms", "same face %", "diff faces", "diff hit/miss", "diff gap", "max rel dt", "any same %", "diff any", "shadowed %"]


def table(rows: list[dict]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e-2 else (f"{v:.3f}" if v < 10 else f"{v:.1f}")
        return str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    _ensure_init()
    rows = []
    for level in ARGS.levels:
        rows.append(bench_level(level))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    t = table(rows)
    print(f"\nres {ARGS.res}^2 camera rays, random pixel order; single-thread CPU ns/ray (time.thread_time)\n")
    print(t)
    if ARGS.out:
        with open(ARGS.out, "w") as fh:
            fh.write(t + "\n")


if __name__ == "__main__":
    main()
