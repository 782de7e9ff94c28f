"""Path tracing vs Mitsuba 3 at equal *error*: each renderer's samplers, image and gradient error per CPU second.

Scene: the validation Cornell box of ``trace_gi.py`` (``--mesh-level L`` adds its icosphere), float32, ``--bounces``
bounces. Both renderers run at the same spp with several samplers:

* lumigrad ``TraceSettings(sampler="independent" | "sobol")`` (the fused path kernel; its backward with path replay);
* Mitsuba ``independent`` (its default), ``multijitter`` and ``ldsampler`` (its low-discrepancy sampler), integrators
  ``path`` (forward) and ``prb`` (fwd+bwd).

Quantities, per estimator over ``--seeds`` seeds: the image's relative MSE ``mean((I - R)^2) / mean(R^2)`` against a
reference ``R`` (Mitsuba ``ldsampler`` at ``--ref-spp`` spp, 4 seeds; cached in ``--cache``), and the variance of
the gradient of the image mean w.r.t. the floor albedo (3 numbers; both estimators are unbiased, so the variance
is their MSE). CPU seconds (process time, all threads) are medians over the seeds. The equal-error ratio of two
estimators is ``(CPU_a x MSE_a) / (CPU_b x MSE_b)``: for unbiased estimators MSE ~ 1 / samples, so it is the ratio of
the CPU times at which both reach the same error.

Usage: ``PYTHONPATH=. python bench/trace_gi_error.py [--res 128] [--spp 16] [--seeds 12] [--mesh-level 6]``.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gi_args import gi_args  # noqa: E402


def _extra(ap):
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--ref-spp", type=int, default=2048)
    ap.add_argument("--mesh-level", type=int, default=None)
    ap.add_argument("--cache", default="/tmp/lumigrad_bench_cache")
    ap.add_argument("--no-grad", action="store_true", help="image error only (no fwd+bwd rows)")


ARGS = gi_args(__doc__.split("\n")[0], threads=2, reps=1, add=_extra)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from _gi_scenes import box_with_sphere  # noqa: E402
from mitsuba_scenes import cornell_box  # noqa: E402

from lumigrad._mitsuba import import_mitsuba, mitsuba_scene  # noqa: E402
from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402

MI_SAMPLERS = ("independent", "multijitter", "ldsampler")
LG_SAMPLERS = ("independent", "sobol")


def _cpu(fn):
    c = time.process_time()
    out = fn()
    return out, time.process_time() - c


def _scene():
    if ARGS.mesh_level is None:
        shapes64, cam64, _ = cornell_box(ARGS.res)
        return shapes64, cam64, "Cornell box"
    shapes64, cam64 = box_with_sphere(ARGS.res, ARGS.mesh_level)
    return shapes64, cam64, f"Cornell box + icosphere-{ARGS.mesh_level}"


def _lumigrad(shapes64, cam64):
    """``run(sampler, seed, grad) -> (image [H, W, 3] float64, grad [3] or None)`` of lumigrad."""
    cam = cam64.to(dtype=torch.float32)
    alb0 = shapes64[0].material.albedo.float()

    def shapes_with(alb):
        return [Shape(Mesh(s.mesh.verts.float(), s.mesh.faces),
                      LambertMaterial(alb if i == 0 else (s.material.albedo.float()
                                                          if isinstance(s.material.albedo, torch.Tensor)
                                                          else s.material.albedo)),
                      None if s.emission is None else s.emission.float()) for i, s in enumerate(shapes64)]

    accel = prepare_trace(shapes_with(alb0))

    def run(sampler, seed, grad):
        alb = alb0.clone().requires_grad_(grad)
        st = TraceSettings(spp=ARGS.spp, max_bounces=ARGS.bounces, boundary="none", replay=True, seed=seed,
                           sampler=sampler)
        with torch.set_grad_enabled(grad):
            img = render_trace(shapes_with(alb), cam, [], st, accel=accel).image
            g = None
            if grad:
                img.mean().backward()
                g = alb.grad.double().numpy()
        return img[0].detach().double().numpy(), g

    return run


def _mitsuba(mi, dr, shapes64, cam64):
    """``run(sampler, seed, grad, spp=ARGS.spp)`` of Mitsuba (``path`` / ``prb``), scenes built once per sampler."""
    scenes = {}
    key = "shape0.bsdf.reflectance.value"

    def scene(sampler, integ):
        if (sampler, integ) not in scenes:
            sc = mitsuba_scene(mi, shapes64, cam64, [], spp=ARGS.spp, seed_sampler=sampler,
                               integrator={"type": integ, "max_depth": ARGS.bounces + 1})
            scenes[sampler, integ] = (sc, mi.traverse(sc))
        return scenes[sampler, integ]

    def run(sampler, seed, grad, spp=ARGS.spp):
        sc, params = scene(sampler, "prb" if grad else "path")
        if not grad:
            img = mi.render(sc, spp=spp, seed=seed)
            dr.eval(img)
            dr.sync_thread()
            return np.asarray(img, dtype=np.float64), None
        dr.enable_grad(params[key])
        params.update()
        img = mi.render(sc, params, spp=spp, seed=seed)
        dr.backward(dr.mean(img, axis=None))
        g = dr.grad(params[key])
        dr.eval(g)
        dr.sync_thread()
        out = np.asarray(g, dtype=np.float64).reshape(-1)
        dr.set_grad(params[key], 0)
        return np.asarray(img, dtype=np.float64), out

    return run


def _reference(mi_run, label):
    os.makedirs(ARGS.cache, exist_ok=True)
    fn = os.path.join(ARGS.cache, f"gi_ref_{label.replace(' ', '_').replace('+', '')}_{ARGS.res}_{ARGS.bounces}_"
                                  f"{ARGS.ref_spp}.npy")
    if not os.path.exists(fn):
        ref = np.mean([mi_run("ldsampler", 100_000 + k, False, ARGS.ref_spp)[0] for k in range(4)], 0)
        np.save(fn, ref)
    return np.load(fn)


def _measure(run, sampler, grad, ref):
    """``(median CPU s, mean relative image MSE, gradient variance (sum over the 3 channels) or None)``."""
    run(sampler, 999, grad)  # warm-up (compiles, scene set-up)
    cpu, err, gs = [], [], []
    for seed in range(ARGS.seeds):
        (img, g), c = _cpu(lambda: run(sampler, seed, grad))
        cpu.append(c)
        err.append(float(((img - ref) ** 2).mean() / (ref ** 2).mean()))
        if g is not None:
            gs.append(g)
    gvar = float(np.var(np.stack(gs), axis=0, ddof=1).sum()) if gs else None
    return statistics.median(cpu), float(np.mean(err)), gvar, (np.mean(np.stack(gs), 0) if gs else None)


def main():
    mi, dr = import_mitsuba("llvm_ad_rgb")
    dr.set_thread_count(ARGS.threads)
    shapes64, cam64, label = _scene()
    lg, mr = _lumigrad(shapes64, cam64), _mitsuba(mi, dr, shapes64, cam64)
    ref = _reference(mr, label)
    rows = {}
    for grad in ([False] if ARGS.no_grad else [False, True]):
        for s in LG_SAMPLERS:
            rows[f"lumigrad {s}", grad] = _measure(lg, s, grad, ref)
        for s in MI_SAMPLERS:
            rows[f"Mitsuba {s}", grad] = _measure(mr, s, grad, ref)
    nf = sum(int(s.mesh.faces.shape[0]) for s in shapes64)
    print(f"\n{label} ({nf} triangles), {ARGS.res}^2, {ARGS.spp} spp, {ARGS.bounces} bounces, {ARGS.threads} threads, "
          f"{ARGS.seeds} seeds, reference Mitsuba ldsampler 4 x {ARGS.ref_spp} spp; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| estimator | pass | CPU s | rel. image MSE | CPU x MSE | gradient variance | CPU x variance | mean gradient |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, grad), (c, e, gv, gm) in rows.items():
        gcol = f"{gv:.3e} | {c * gv:.3e} | {np.array2string(gm, precision=5)}" if gv is not None else "- | - | -"
        print(f"| {name} | {'fwd+bwd' if grad else 'fwd'} | {c:.3f} | {e:.5f} | {c * e:.3e} | {gcol} |")
    for grad in ([False] if ARGS.no_grad else [False, True]):
        for s in LG_SAMPLERS:
            c, e, gv, _ = rows[f"lumigrad {s}", grad]
            parts = []
            for m in MI_SAMPLERS:
                mc, me, mgv, _ = rows[f"Mitsuba {m}", grad]
                if grad:
                    parts.append(f"{m} {c * gv / (mc * mgv):.2f}")
                else:
                    parts.append(f"{m} {c * e / (mc * me):.2f}")
            what = "gradient CPU x variance" if grad else "image CPU x MSE"
            print(f"equal-error ratio ({what}), lumigrad {s} / Mitsuba: " + ", ".join(parts)
                  + f"; CPU at equal spp / Mitsuba independent {c / rows['Mitsuba independent', grad][0]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
