"""Per-stage profile of :func:`lumigrad.ops.rasterize` (CPU bands path) and of ``_raster_primary``.

Every launch and helper that ``lumigrad.ops.rasterize`` calls is wrapped in a timer (exclusive
times: a stage's time excludes the stages it calls), so one call splits into validation,
buffer allocation, the kernels (vertex bounds, setup + count, bin fill, bands) and the Python /
torch glue in between. Columns per stage: the calling thread's CPU time (``time.thread_time``)
with ``--threads 1`` (all launches then run on the calling thread), median over ``--reps``
calls, in ms. ``--threads 2`` gives wall times instead (``time.perf_counter``).

Usage: ``PYTHONPATH=$PWD python bench/raster_profile.py [--threads 1] [--reps 9] [--primary]``
(``PYTHONPATH`` may point at another checkout's sources to profile those). ``--primary`` adds
``render_trace``'s ``_raster_primary`` on the scene of ``bench/raytrace.py``.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--threads", type=int, default=1)
p.add_argument("--reps", type=int, default=9)
p.add_argument("--cases", nargs="*", default=["4:256", "6:256", "4:512", "6:512", "8:512", "4:1024", "6:1024", "8:1024"],
               help="level:res pairs")
p.add_argument("--primary", action="store_true", help="also profile render_trace's _raster_primary (raytrace.py scene)")
p.add_argument("--no-db", action="store_true", help="grad_db=False")
ARGS = p.parse_args()
os.environ["LUMIGRAD_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raster_w2 import clip_positions  # noqa: E402
import trimesh  # noqa: E402

torch.set_num_threads(ARGS.threads)

import importlib  # noqa: E402

R = importlib.import_module("lumigrad.ops.rasterize")  # the module (lumigrad.ops.rasterize is also the function)

CLOCK = time.thread_time if ARGS.threads == 1 else time.perf_counter
_acc: dict = collections.defaultdict(float)
_stack: list = []


def _timed(name_of, fn):
    def wrapper(*a, **k):
        name = name_of(a)
        t = CLOCK()
        _stack.append(0.0)
        try:
            return fn(*a, **k)
        finally:
            dt = CLOCK() - t
            inner = _stack.pop()
            _acc[name] += dt - inner
            if _stack:
                _stack[-1] += dt
    return wrapper


def _kname(a):
    k = a[0]
    if isinstance(k, list):  # launch_chunks
        k = k[0][0] if k else None
    return getattr(k, "key", getattr(k, "__name__", "?")).split(".")[-1]


for _n in ("launch", "launch_chunks"):
    setattr(R, _n, _timed(lambda a: "k:" + _kname(a), getattr(R, _n)))
for _n in ("_alloc", "check_faces", "check_finite", "check_float_tensor", "check_resolution", "check_same_device",
           "_forward", "_forward_bands", "_pixel_centres", "to_warp"):
    setattr(R, _n, _timed(lambda a, n=_n: n, getattr(R, _n)))
_fn_apply = R._RasterizeFn.apply
R._RasterizeFn.apply = _timed(lambda a: "autograd.Function", _fn_apply)
R.rasterize = _timed(lambda a: "rasterize (validation, wrapper)", R.rasterize)
if hasattr(R, "_rasterize_ids"):  # the tracer's ids-only entry point
    R._rasterize_ids = _timed(lambda a: "rasterize (validation, wrapper)", R._rasterize_ids)
    R._check_inputs = _timed(lambda a: "_check_inputs", R._check_inputs)


def profile(fn, reps):
    fn()
    fn()
    runs = []
    for _ in range(reps):
        _acc.clear()
        t = CLOCK()
        fn()
        total = CLOCK() - t
        d = dict(_acc)
        d["(outside rasterize)"] = total - sum(_acc.values())
        d["TOTAL"] = total
        runs.append(d)
    keys = sorted({k for r in runs for k in r})
    return {k: statistics.median(r.get(k, 0.0) for r in runs) * 1e3 for k in keys}


def main():
    rows = {}
    meshes = {}
    for case in ARGS.cases:
        level, res = map(int, case.split(":"))
        if level not in meshes:
            m = trimesh.creation.icosphere(subdivisions=level)
            meshes[level] = (clip_positions(np.asarray(m.vertices)), torch.tensor(np.asarray(m.faces), dtype=torch.int32))
        pos, tri = meshes[level]
        ws = R.RasterizeWorkspace()
        rows[f"{tri.shape[0]} / {res}^2"] = profile(lambda: R.rasterize(pos, tri, (res, res), grad_db=not ARGS.no_db,
                                                                       workspace=ws), ARGS.reps)
    if ARGS.primary:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from lumigrad.render import path as lg_path
        from lumigrad.scene.trace_types import TraceSettings
        sys.argv = sys.argv[:1]
        import raytrace

        # raytrace sets its own thread counts on import: back to ours.
        os.environ["LUMIGRAD_NUM_THREADS"] = str(ARGS.threads)
        torch.set_num_threads(ARGS.threads)
        lg_path.rasterize = R.rasterize
        if hasattr(lg_path, "_rasterize_ids"):
            lg_path._rasterize_ids = R._rasterize_ids
        for level, res in ((4, 256), (6, 256), (4, 512), (6, 512)):
            shapes, cam, lights = raytrace.scene(level, res)
            accel = lg_path.prepare_trace(shapes)
            sc = lg_path._Scene(shapes, cam, lights, TraceSettings(spp=1), accel)
            nf = sum(int(s.mesh.faces.shape[0]) for s in shapes)
            rows[f"primary {nf} / {res}^2"] = profile(lambda: lg_path._raster_primary(sc, force=True), ARGS.reps)
    keys = sorted({k for r in rows.values() for k in r}, key=lambda k: (k == "TOTAL", k))
    unit = "thread CPU ms, 1 thread" if ARGS.threads == 1 else f"wall ms, {ARGS.threads} threads"
    print(f"rasterize stages ({unit}, median of {ARGS.reps}, grad_db={not ARGS.no_db}, workspace reused)\n")
    print("| stage | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r.get(k, 0.0):.3f}" for r in rows.values()) + " |")


if __name__ == "__main__":
    main()
