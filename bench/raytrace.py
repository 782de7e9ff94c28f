"""Ray tracing benchmark: lumigrad's tracer vs Mitsuba 3 (``llvm_ad_rgb``), side by side in one run.

Scene: an icosphere (5k / 82k / 1.3M triangles) over a floor plane, one point
light, one camera. Columns (medians over --reps runs after warm-up):

* ``lg Mray/s``, ``mi Mray/s``: primary visibility, closest hits of res^2 camera
  rays, one jittered sample per pixel in raster order (lumigrad: :func:`lumigrad.ops.trace.intersect`
  on a :class:`TraceBVH`; Mitsuba: ``scene.ray_intersect`` on the same rays, evaluated and waited
  for: Dr.Jit's LLVM backend launches kernels asynchronously, and before session 6 this benchmark
  timed only the launch, so its Mitsuba ray rates were 10-30x too high).
* ``lg raster Mray/s``: the same primary visibility (closest triangle of res^2 camera samples) by
  rasterization, as ``render_trace`` finds its camera samples' hits by default
  (``TraceSettings(primary="raster")``; :func:`lumigrad.render.path._raster_primary`: projection,
  near / far from the vertex depths, one sub-pixel-shifted raster pass, face ids), and
  ``raster time lg/mi`` its time over Mitsuba's ``ray_intersect``.
* ``lg rays cpu ns``, ``lg raster cpu ns``, ``mi rays cpu ns``: CPU time (all threads of the process) per
  primary ray; run with ``--threads 1`` for single-thread figures (then also ``lg ... thr``: the calling
  thread's CPU time, ``time.thread_time``, which holds all of lumigrad's work with one thread).
  ``raster cpu lg/mi``: ``lg raster cpu ns`` over ``mi rays cpu ns`` (less noisy than the wall ratio
  on a shared machine). ``--no-fb`` skips the fb columns below (a quick primary-visibility run).
* ``lg fb ms``, ``mi fb ms``: direct lighting with shadows, 4 spp, forward +
  backward of the mean image w.r.t. all vertex positions (lumigrad:
  ``render_trace`` with edge-sampled boundaries, one edge sample per pixel;
  Mitsuba: ``direct_projective`` with sppc = sppp = sppi = 4). ``lg fb`` uses the default
  ``TraceSettings`` (rasterized camera samples); with ``--fb-bvh`` the same render with
  ``primary="bvh"`` is timed too, alternating with the others (``lg fb bvh ms``, ``lg fb bvh cpu s``).
* ``lg fb cpu s``, ``mi fb cpu s``, ``fb cpu lg/mi``: CPU seconds of the fb runs (all threads of the
  process): on a machine shared with other jobs, wall times follow the share of the CPU each run
  happened to get, CPU times much less.
* ``refit ms``: ``TraceBVH.refit`` after the vertices move (lumigrad).
* ratios are lumigrad / Mitsuba for time (< 1: lumigrad faster) and
  Mitsuba / lumigrad for rays/s inverted likewise.

Timing: in blocks (each measurement's runs back to back, one measurement after another, the whole
sequence twice; medians over both blocks), as ``bench/raster.py`` does. Until session 7 the runs
alternated (lg, mi, lg, mi, ...), but Dr.Jit's worker threads keep both cores busy for a while after a
Mitsuba run and slow whatever runs next: lumigrad's rasterized camera samples (5k triangles, 256^2)
ran at 18.0 Mray/s (116 CPU ns per ray, the process's threads) alternating with Mitsuba and at 26.3
Mray/s (48 ns) with no Mitsuba in the process; the BVH queries at 6.3 vs 12.3 Mray/s. Short runs (a
few ms) suffer most; the path-tracing runs of ``trace_gi.py`` (0.1-0.4 s) were the same either way.

OpenMP: ``OMP_WAIT_POLICY=PASSIVE`` is set (unless already set) before torch is imported.
With libgomp's default active wait, torch's idle OpenMP worker spins for milliseconds after
every parallel op and takes a core from the Warp thread pool that runs the ray queries, and on a
machine shared with other jobs a preempted worker stalls every op at its barrier: the fwd+bwd
times were 3-10x longer and varied 10x from run to run. ``--omp-active`` keeps the default.
Mitsuba does not use OpenMP (its own thread pool), so the setting does not change its times.

Usage: ``python bench/raytrace.py [--quick] [--threads 2] [--reps 3] [--out table.md]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for lumigrad, torch and Mitsuba (default 2)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--quick", action="store_true", help="skip the 1.3M-triangle mesh and 512^2")
    p.add_argument("--no-mitsuba", action="store_true", help="do not run Mitsuba even if it imports")
    p.add_argument("--levels", type=int, nargs="+", help="icosphere subdivisions to run (default 4 6 8; --quick: 4 6)")
    p.add_argument("--resolutions", type=int, nargs="+", help="image sizes (default 256 512; --quick: 256)")
    p.add_argument("--out", help="also write the table as markdown to this file")
    p.add_argument("--fb-bvh", action="store_true", help="also time fwd+bwd with TraceSettings(primary='bvh')")
    p.add_argument("--no-fb", action="store_true", help="skip the fwd+bwd render columns (primary visibility only)")
    p.add_argument("--omp-active", action="store_true", help="keep libgomp's default (active) wait policy")
    return p.parse_args()


ARGS = _parse()
os.environ.setdefault("LUMIGRAD_NUM_THREADS", str(ARGS.threads))
if not ARGS.omp_active:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from lumigrad.geometry.primitives import icosphere, plane  # noqa: E402
from lumigrad.ops.trace import intersect  # noqa: E402
from lumigrad.render import path as lg_path  # noqa: E402
from lumigrad.render.path import _camera_rays, prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.camera import Camera  # noqa: E402
from lumigrad.scene.lights import PointLight  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402


def _mitsuba():
    if ARGS.no_mitsuba:
        return None, None
    try:
        from lumigrad._mitsuba import import_mitsuba

        mi, dr = import_mitsuba("llvm_ad_rgb")
    except ImportError as e:
        print(f"(no Mitsuba: {e})", file=sys.stderr)
        return None, None
    dr.set_thread_count(ARGS.threads)
    mi.set_log_level(mi.LogLevel.Error)
    return mi, dr


def timed(fns: dict, reps: int) -> tuple[dict, dict, dict]:
    """Median wall and CPU seconds of each callable, timed in blocks (see the module docstring): each
    callable runs once as a warm-up and then ``reps`` times back to back, the callables one after another,
    and the whole sequence twice; medians over both blocks.

    CPU seconds are the process's, all threads (lumigrad's pool, torch's, Mitsuba's): unlike wall time
    they hardly depend on how much of the machine other jobs take. The third dict is the calling thread's
    CPU seconds (``time.thread_time``): with ``--threads 1`` all of lumigrad's work (its launches then run
    on the calling thread), not Mitsuba's (its own worker threads).
    """
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    thr = {k: [] for k in fns}
    for _ in range(2):
        for k, f in fns.items():
            f()
            for _ in range(reps):
                t, c, h = time.perf_counter(), time.process_time(), time.thread_time()
                f()
                times[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
                thr[k].append(time.thread_time() - h)
    med = statistics.median
    return ({k: med(v) for k, v in times.items()}, {k: med(v) for k, v in cpu.items()}, {k: med(v) for k, v in thr.items()})


def scene(level: int, res: int):
    if level <= 7:
        v, f = icosphere(level)
    else:  # lumigrad's icosphere stops at 7 subdivisions; trimesh builds the same sphere further
        import trimesh

        m = trimesh.creation.icosphere(subdivisions=level)
        v = torch.tensor(np.asarray(m.vertices), dtype=torch.float32)
        f = torch.tensor(np.asarray(m.faces), dtype=torch.int32)
    pv, pf = plane(6.0)
    pv = pv - torch.tensor([0.0, 1.0, 0.0])
    cam = Camera.look_at(torch.tensor([0.0, 1.5, 4.0]), torch.tensor([0.0, -0.3, 0.0]), width=res, height=res)
    shapes = [Shape(Mesh(v, f), LambertMaterial(torch.tensor([0.8, 0.5, 0.3]))), Shape(Mesh(pv, pf), LambertMaterial(0.6))]
    return shapes, cam, [PointLight(torch.tensor([1.5, 3.0, 1.0]), intensity=25.0)]


def bench_case(level: int, res: int, mi, dr) -> dict:
    shapes, cam, lights = scene(level, res)
    nf = sum(int(s.mesh.faces.shape[0]) for s in shapes)
    row = {"case": f"icosphere-{level}", "F": nf, "res": f"{res}^2"}
    accel = prepare_trace(shapes)
    g = torch.Generator().manual_seed(0)
    # one jittered sample per pixel in raster order, as a renderer's sampler makes them
    yx = torch.stack(torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij"), -1).reshape(-1, 2)
    pix = yx.flip(-1).float() + torch.rand(res * res, 2, generator=g)
    o, d = _camera_rays(cam, torch.zeros(res * res, dtype=torch.long), pix)
    verts = torch.cat([s.mesh.verts for s in shapes])
    sc1 = lg_path._Scene(shapes, cam, lights, TraceSettings(spp=1), accel)
    assert lg_path._raster_primary(sc1, force=True) is not None
    fns = {"lg_rays": lambda: intersect(accel.bvh, o, d), "lg_raster": lambda: lg_path._raster_primary(sc1, force=True),
           "refit": lambda: accel.bvh.refit(verts)}

    def lg_fb(primary="raster"):
        v0 = shapes[0].mesh.verts.detach().requires_grad_(True)
        sh = [Shape(shapes[0].mesh.with_verts(v0), shapes[0].material), shapes[1]]
        img = render_trace(sh, cam, lights, TraceSettings(spp=4, primary=primary), accel=accel).image
        img.mean().backward()

    if not ARGS.no_fb:
        fns["lg_fb"] = lg_fb
    if ARGS.fb_bvh and not ARGS.no_fb:
        fns["lg_fb_bvh"] = lambda: lg_fb("bvh")
    if mi is not None:
        from lumigrad._mitsuba import mitsuba_scene

        integ = {"type": "direct_projective", "sppc": 4, "sppp": 4, "sppi": 4}
        msc = mitsuba_scene(mi, shapes, cam, lights, spp=4, integrator=integ)
        on, dn = o.numpy(), d.numpy()
        ray = mi.Ray3f(mi.Point3f(*[mi.Float(on[:, i]) for i in range(3)]), mi.Vector3f(*[mi.Float(dn[:, i]) for i in range(3)]))

        def mi_rays():
            si = msc.ray_intersect(ray)
            dr.eval(si.t, si.prim_index)
            dr.sync_thread()  # Dr.Jit's LLVM backend launches asynchronously: wait, or the time lands elsewhere

        params = mi.traverse(msc)
        key = "shape0.vertex_positions"

        def mi_fb():
            dr.enable_grad(params[key])
            params.update()
            img = mi.render(msc, params, spp=4, seed=0)
            dr.backward(dr.mean(img, axis=None))
            dr.eval(dr.grad(params[key]))
            dr.sync_thread()
            dr.disable_grad(params[key])

        fns["mi_rays"] = mi_rays
        if not ARGS.no_fb:
            fns["mi_fb"] = mi_fb
    t, c, h = timed(fns, ARGS.reps)
    rays = res * res
    row.update({"lg Mray/s": rays / t["lg_rays"] / 1e6, "refit ms": 1e3 * t["refit"],
                "lg raster Mray/s": rays / t["lg_raster"] / 1e6,
                "lg rays cpu ns": 1e9 * c["lg_rays"] / rays, "lg raster cpu ns": 1e9 * c["lg_raster"] / rays})
    if not ARGS.no_fb:
        row.update({"lg fb ms": 1e3 * t["lg_fb"], "lg fb cpu s": c["lg_fb"]})
    if ARGS.fb_bvh and not ARGS.no_fb:
        row.update({"lg fb bvh ms": 1e3 * t["lg_fb_bvh"], "lg fb bvh cpu s": c["lg_fb_bvh"]})
    if ARGS.threads == 1:
        row.update({"lg rays thr ns": 1e9 * h["lg_rays"] / rays, "lg raster thr ns": 1e9 * h["lg_raster"] / rays})
        if not ARGS.no_fb:
            row["lg fb thr s"] = h["lg_fb"]
        if ARGS.fb_bvh and not ARGS.no_fb:
            row["lg fb bvh thr s"] = h["lg_fb_bvh"]
    if mi is not None:
        row.update({"mi Mray/s": rays / t["mi_rays"] / 1e6})
        row["mi rays cpu ns"] = 1e9 * c["mi_rays"] / rays
        row["rays time lg/mi"] = t["lg_rays"] / t["mi_rays"]
        row["raster time lg/mi"] = t["lg_raster"] / t["mi_rays"]
        row["raster cpu lg/mi"] = c["lg_raster"] / c["mi_rays"]
        if not ARGS.no_fb:
            row.update({"mi fb ms": 1e3 * t["mi_fb"], "mi fb cpu s": c["mi_fb"]})
            row["fb time lg/mi"] = t["lg_fb"] / t["mi_fb"]
            row["fb cpu lg/mi"] = c["lg_fb"] / c["mi_fb"]
    return row


COLUMNS = ["case", "F", "res", "lg Mray/s", "lg raster Mray/s", "mi Mray/s", "rays time lg/mi", "raster time lg/mi",
           "lg rays cpu ns", "lg raster cpu ns", "mi rays cpu ns", "raster cpu lg/mi", "lg fb ms", "lg fb bvh ms",
           "mi fb ms", "fb time lg/mi", "lg fb cpu s", "lg fb bvh cpu s", "mi fb cpu s", "fb cpu lg/mi", "refit ms"]
if ARGS.threads == 1:
    COLUMNS += ["lg rays thr ns", "lg raster thr ns", "lg fb thr s", "lg fb bvh thr s"]
if ARGS.no_fb:
    COLUMNS = [c for c in COLUMNS if " fb " not in c and not c.startswith("fb ")]


def table(rows: list[dict]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if v < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    mi, dr = _mitsuba()
    levels = ARGS.levels or ([4, 6] if ARGS.quick else [4, 6, 8])
    resolutions = ARGS.resolutions or ([256] if ARGS.quick else [256, 512])
    rows = []
    print(table([]), flush=True)
    for level in levels:
        for res in resolutions:
            rows.append(bench_case(level, res, mi, dr))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    header = (f"ray tracing benchmark: {ARGS.threads} threads, median of {ARGS.reps} runs; torch {torch.__version__}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
              + (f", Mitsuba {mi.__version__} ({mi.variant()})" if mi is not None else ", no Mitsuba"))
    text = header + "\n\n" + table(rows) + "\n"
    print("\n" + text)
    if ARGS.out:
        from lumigrad._runtime.files import write_text_atomic

        write_text_atomic(ARGS.out, text)


if __name__ == "__main__":
    main()
