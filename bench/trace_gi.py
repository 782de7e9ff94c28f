"""Path tracing (global illumination) vs Mitsuba 3 (``llvm_ad_rgb``), side by side in one run.

Scene: the validation Cornell box (``tests/validation/mitsuba_scenes.cornell_box``: 8 Lambertian
shapes, an emissive ceiling quad), float32; with ``--mesh-level 4 6 8`` also the box with an icosphere of 5k / 82k /
1.3M triangles on its short block (``bench/_gi_scenes.py``), one table per scene. Columns (median of --reps after a
warm-up; the image means, lumigrad's and Mitsuba's, are printed as a check that both render the same scene):

* ``fwd``: path tracing with ``max_bounces`` bounces (Mitsuba ``path``, ``max_depth = bounces + 1``).
* ``fwd+bwd``: the same plus the gradient of the mean image w.r.t. the floor albedo (lumigrad: MIS path
  tracer, with and without path replay; Mitsuba: ``prb``, which is path replay). Only materials need
  gradients, so lumigrad runs its fused path kernel (``lumigrad.render._path_fused``), whose backward is
  path replay in either case; ``--general`` adds rows for the torch general path (the kernel off).

Runs alternate between the configurations (see ``bench/raytrace.py``), and ``OMP_WAIT_POLICY=PASSIVE``
is set before torch is imported unless ``--omp-active`` (why: ``bench/raytrace.py``'s docstring).

Usage: ``PYTHONPATH=. python bench/trace_gi.py [--res 64] [--spp 16] [--bounces 3] [--threads 2]
[--mesh-level 4 6 8] [--no-box]``.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gi_args import gi_args  # noqa: E402


def _extra(ap):
    ap.add_argument("--general", action="store_true",
                    help="also time the torch general path (the fused kernel switched off), in the same rounds")
    ap.add_argument("--omp-active", action="store_true", help="keep libgomp's default (active) wait policy")
    ap.add_argument("--mesh-level", type=int, nargs="*", default=[],
                    help="also the box with an icosphere of these subdivision levels (4 / 6 / 8: 5k / 82k / 1.3M tris)")
    ap.add_argument("--no-box", action="store_true", help="skip the plain Cornell box")


ARGS = gi_args(__doc__.split("\n")[0], threads=2, reps=2, add=_extra)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from _gi_scenes import box_with_sphere  # noqa: E402
from mitsuba_scenes import cornell_box  # noqa: E402

from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402


def timed(fns: dict, reps: int) -> tuple[dict, dict]:
    """Median wall seconds and median process CPU seconds (all threads) of each callable: one warm-up each,
    then ``reps`` interleaved rounds. CPU time is the fairer figure on a loaded machine."""
    for f in fns.values():
        f()
    ts = {k: [] for k in fns}
    cs = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            ts[k].append(time.perf_counter() - t)
            cs[k].append(time.process_time() - c)
    return {k: statistics.median(v) for k, v in ts.items()}, {k: statistics.median(v) for k, v in cs.items()}


def run_scene(shapes64, cam64, label, mi=None, dr=None):
    """Times lumigrad and Mitsuba on one scene (float64 shapes, floor albedo = shape 0's) and prints a table."""
    cam = cam64.to(dtype=torch.float32)

    def shapes_with(alb):
        out = []
        for i, s in enumerate(shapes64):
            a = s.material.albedo
            a = alb if i == 0 else (a.float() if isinstance(a, torch.Tensor) else a)
            out.append(Shape(Mesh(s.mesh.verts.float(), s.mesh.faces), LambertMaterial(a),
                             None if s.emission is None else s.emission.float()))
        return out

    alb0 = shapes64[0].material.albedo.float()
    t = time.perf_counter()
    accel = prepare_trace(shapes_with(alb0))
    t_build = time.perf_counter() - t

    import lumigrad.render._path_fused as pf

    fused_ok = pf.fused_path_ok
    means = {}

    def lg(replay, grad, fused=True, name=None):
        def run():
            alb = alb0.clone().requires_grad_(grad)
            st = TraceSettings(spp=ARGS.spp, max_bounces=ARGS.bounces, boundary="none", replay=replay)
            pf.fused_path_ok = fused_ok if fused else (lambda sc: False)
            try:
                with torch.set_grad_enabled(grad):
                    img = render_trace(shapes_with(alb), cam, [], st, accel=accel).image
                    if grad:
                        img.mean().backward()
            finally:
                pf.fused_path_ok = fused_ok
            if name:
                means[name] = float(img.mean())
        return run

    fns = {"lumigrad fwd": lg(False, False, name="lumigrad"), "lumigrad fwd+bwd": lg(False, True),
           "lumigrad fwd+bwd (replay)": lg(True, True)}
    if ARGS.general:
        fns.update({"lumigrad general fwd": lg(False, False, False), "lumigrad general fwd+bwd": lg(False, True, False),
                    "lumigrad general fwd+bwd (replay)": lg(True, True, False)})
    if mi is not None:
        from lumigrad._mitsuba import mitsuba_scene

        t = time.perf_counter()
        integ = {"type": "path", "max_depth": ARGS.bounces + 1}
        sc = mitsuba_scene(mi, shapes64, cam64, [], spp=ARGS.spp, integrator=integ)

        def mi_fwd():
            img = mi.render(sc, spp=ARGS.spp)
            dr.eval(img)
            dr.sync_thread()  # Dr.Jit's LLVM backend launches asynchronously: wait, or the time lands elsewhere
            means["Mitsuba"] = float(np.asarray(img).mean(dtype=np.float64))

        fns["Mitsuba path fwd"] = mi_fwd
        scp = mitsuba_scene(mi, shapes64, cam64, [], spp=ARGS.spp, integrator={"type": "prb", "max_depth": ARGS.bounces + 1})
        t_mi_load = time.perf_counter() - t
        params = mi.traverse(scp)
        key = "shape0.bsdf.reflectance.value"

        def mi_fb():
            dr.enable_grad(params[key])
            params.update()
            img = mi.render(scp, params, spp=ARGS.spp)
            dr.backward(dr.mean(img, axis=None))
            dr.eval(dr.grad(params[key]))
            dr.sync_thread()

        fns["Mitsuba prb fwd+bwd"] = mi_fb
    rows, cpu = timed(fns, ARGS.reps)
    nf = sum(int(s.mesh.faces.shape[0]) for s in shapes64)
    print(f"\n{label} ({nf} triangles) {ARGS.res}^2, {ARGS.spp} spp, {ARGS.bounces} bounces, {ARGS.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print("image means: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items())
          + f"; lumigrad prepare_trace {t_build:.2f} s" + (f", Mitsuba scene load (2 scenes) {t_mi_load:.2f} s" if mi else ""))
    print("| run | seconds | CPU seconds |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} | {cpu[k]:.2f} |")
    if "Mitsuba path fwd" in rows:
        for name, r in (("time", rows), ("CPU", cpu)):
            print(f"ratios lumigrad / Mitsuba ({name}): fwd {r['lumigrad fwd'] / r['Mitsuba path fwd']:.2f}, "
                  f"fwd+bwd vs prb {r['lumigrad fwd+bwd'] / r['Mitsuba prb fwd+bwd']:.2f}, "
                  f"fwd+bwd (replay) vs prb {r['lumigrad fwd+bwd (replay)'] / r['Mitsuba prb fwd+bwd']:.2f}")
    sys.stdout.flush()


def main():
    mi = dr = None
    try:
        from lumigrad._mitsuba import import_mitsuba

        mi, dr = import_mitsuba("llvm_ad_rgb")
        dr.set_thread_count(ARGS.threads)
    except ImportError as e:
        print(f"Mitsuba unavailable: {e}")
    if not ARGS.no_box:
        shapes64, cam64, _ = cornell_box(ARGS.res)
        run_scene(shapes64, cam64, "Cornell box", mi, dr)
    for level in ARGS.mesh_level:
        shapes64, cam64 = box_with_sphere(ARGS.res, level)
        run_scene(shapes64, cam64, f"Cornell box + icosphere-{level}", mi, dr)


if __name__ == "__main__":
    main()
