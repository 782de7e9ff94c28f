"""Shape gradients under global illumination: lumigrad vs Mitsuba 3 ``prb_projective``, time and gradient error.

Scene: ``bench/_gi_scenes.box_with_sphere`` (the Cornell box with a floating icosphere, ``--level`` 4 / 6 / 8:
5k / 82k / 1.3M triangles), float32, ``--bounces`` 3. Quantity: ``g = d mean(image) / d t``, the gradient of the
image mean w.r.t. the sphere's translation ``t`` (3-vector; every vertex moves by ``t``), which collects the
interior term and all visibility terms: the sphere's primary silhouette, its soft shadow from the area light and
its occlusion of indirect light (and the walls' light it blocks at later bounces).

Estimators, one per seed, at the same ``--spp``:

* lumigrad: ``render_trace(..., TraceSettings(spp, max_bounces, boundary="edge"))`` with its defaults (one
  boundary sample per pixel for primary silhouettes, one per camera sample for indirect visibility at each path
  vertex (one per pixel until session 11's change of the default), 16 light
  samples for the area light's soft-shadow boundaries), ``img.mean().backward()``; the BVH is refitted (a
  ``TraceAccel`` shared by the runs, as in an optimisation loop).
* Mitsuba: ``prb_projective`` (``max_depth = bounces + 1``, octree guiding with its defaults),
  ``mi.render(scene, params, spp=spp, seed)`` (which sets ``sppc = sppp = sppi = spp``: its defaults at a given
  spp) after ``params.update()`` of the moved vertices, ``dr.backward`` of the image mean.

The two alternate seed by seed (after one warm-up each, not timed: Dr.Jit compiles its kernels there). Per
estimator: median wall and process CPU seconds per gradient (fwd + bwd), mean and standard error of ``g`` over
the seeds, and its error against a reference ``g_ref``:

* ``bias = |mean(g) - g_ref| / |g_ref|`` (with its noise floor ``|s.e.| / |g_ref|``);
* ``rel. RMSE = sqrt(mean_s |g_s - g_ref|^2) / |g_ref|``: the error of one gradient at this spp; and the median
  over seeds of ``|g_s - g_ref| / |g_ref|`` (robust to the heavy tail of lumigrad's indirect-visibility term);
* work-normalised: ``CPU seconds x MSE``. For unbiased estimators the MSE falls as 1 / samples, so the ratio
  of ``CPU x MSE`` (lumigrad over Mitsuba) is the ratio of the times they need to reach equal error (at the
  spp where that error is reached, assuming time proportional to spp).

Reference ``g_ref``: central differences (``h = --h``) of Mitsuba ``path`` renders with common random numbers
(same seed at ``t = +h e_i`` and ``-h e_i``), ``--ref-seeds`` x ``--ref-spp``; computed by ``--reference`` and
stored in ``REFERENCE`` below (independent of either gradient estimator). The lumigrad and Mitsuba means over all
seeds are compared with it too (the bias column).

Usage: ``PYTHONPATH=. python bench/trace_gi_shape.py [--res 32] [--spp 16] [--level 4] [--seeds 12] [--unguided]
[--bounces 1 --integrator direct_projective] [--edge-scale 1] [--indirect-scale 1] [--shadow-light-samples 16]``
(about 1.5 minutes unloaded); figures in ``bench/results_trace11.md``;
``--reference`` computes the reference (minutes). Set ``DRJIT_LIBLLVM_PATH`` for Mitsuba.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gi_args import gi_args  # noqa: E402


def _extra(ap):
    ap.set_defaults(res=32)  # the resolution of the stored references
    ap.add_argument("--level", type=int, default=4, help="icosphere subdivisions (4 / 6 / 8: 5k / 82k / 1.3M tris)")
    ap.add_argument("--seeds", type=int, default=12, help="gradients per estimator (seeds)")
    ap.add_argument("--lumigrad-seeds", type=int, default=64,
                    help="lumigrad's gradients (seeds) in all: those past --seeds run after the alternating rounds "
                         "(lumigrad's estimates are heavy-tailed here, see bench/results_trace11.md: 12 seeds "
                         "do not pin its variance down)")
    ap.add_argument("--reference", action="store_true", help="compute the Mitsuba CRN finite-difference reference")
    ap.add_argument("--variance-only", action="store_true",
                    help="run where no reference is stored: compare the estimators' variances (CPU x variance)")
    ap.add_argument("--ref-spp", type=int, default=1024)
    ap.add_argument("--ref-seeds", type=int, default=8)
    ap.add_argument("--h", type=float, default=0.01, help="finite-difference step of the reference")
    ap.add_argument("--no-mitsuba", action="store_true")
    ap.add_argument("--ref-level", type=int, help="take the reference of this level (e.g. 6 for 8: the spheres' "
                                                  "references at levels 4 and 6 agree within 1 %%)")
    ap.add_argument("--save", help="write every estimator's per-seed gradients to this .npz")
    ap.add_argument("--unguided", action="store_true", help="also Mitsuba prb_projective with guiding='none'")
    ap.add_argument("--no-guided", action="store_true",
                    help="leave out Mitsuba with its default (octree) guiding: 7x the time of the unguided run")
    ap.add_argument("--sampler", default="sobol", choices=("sobol", "independent"), help="lumigrad's sampler")
    ap.add_argument("--first-seed", type=int, default=0, help="lumigrad's seeds start here")
    ap.add_argument("--integrator", default="prb_projective", choices=("prb_projective", "direct_projective"),
                    help="Mitsuba's estimator (direct_projective: direct light only, needs --bounces 1)")
    ap.add_argument("--edge-scale", type=float, default=1.0,
                    help="lumigrad's edge_samples (screen-space boundary samples) as a multiple of the default H x W")
    ap.add_argument("--shadow-light-samples", type=int, default=16, help="lumigrad's TraceSettings.shadow_light_samples")
    ap.add_argument("--interior", default="detached", choices=("detached", "attached"),
                    help="lumigrad's TraceSettings.interior")
    ap.add_argument("--correlated", action="store_true",
                    help="lumigrad's TraceSettings(decorrelate=False): one render instead of a gradient-free one plus "
                         "one for the derivatives (the same expectation here: the image mean is linear)")
    ap.add_argument("--indirect-scale", type=float, default=1.0,
                    help="lumigrad's indirect_samples as a multiple of the default H x W x spp")


ARGS = gi_args(__doc__.split("\n")[0], threads=2, reps=0, add=_extra)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from _gi_scenes import box_with_sphere  # noqa: E402

from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402

# (level, res, bounces) -> (g_ref, standard error, how it was measured); from --reference.
REFERENCE: dict[tuple[int, int, int], tuple[tuple[float, float, float], tuple[float, float, float], str]] = {
    (4, 32, 3): ((0.010999, -0.002321, -0.003764), (0.000088, 0.000144, 0.000109),
                 "Mitsuba path CRN FD h=0.01, 8 x 4096 spp, 364 s"),
    (6, 32, 3): ((0.010986, -0.002259, -0.003658), (0.000063, 0.000138, 0.000111),
                 "Mitsuba path CRN FD h=0.01, 8 x 4096 spp, 190 s"),
    (4, 64, 1): ((0.008955, -0.007615, -0.004324), (0.000071, 0.000079, 0.000017),
                 "Mitsuba path CRN FD h=0.01, 8 x 2048 spp, 39 s"),
    (6, 64, 1): ((0.008958, -0.0076, -0.004351), (0.000076, 0.00008, 0.000016),
                 "Mitsuba path CRN FD h=0.01, 8 x 2048 spp, 48 s"),
}


def lumigrad_grad(shapes, cam, accel):
    """``seed -> (g [3], wall s, CPU s)``: lumigrad's fwd + bwd at ``ARGS.spp`` with its boundary terms."""
    sphere = shapes[-1]

    def run(seed):
        t0, c0 = time.perf_counter(), time.process_time()
        shift = torch.zeros(3, requires_grad=True)
        sh = shapes[:-1] + [Shape(Mesh(sphere.mesh.verts + shift, sphere.mesh.faces), sphere.material)]
        st = TraceSettings(spp=ARGS.spp, max_bounces=ARGS.bounces, boundary="edge", seed=seed + ARGS.first_seed,
                           sampler=ARGS.sampler, edge_samples=max(1, round(ARGS.edge_scale * ARGS.res ** 2)),
                           indirect_samples=round(ARGS.indirect_scale * ARGS.res ** 2 * ARGS.spp),
                           shadow_light_samples=ARGS.shadow_light_samples, interior=ARGS.interior,
                           decorrelate=not ARGS.correlated)
        render_trace(sh, cam, [], st, accel=accel).image.mean().backward()
        return shift.grad.double().numpy(), time.perf_counter() - t0, time.process_time() - c0
    return run


def mitsuba_setup(mi, shapes64, cam64, integrator):
    """``(scene, params, key, initial sphere vertices)``: the sphere is the last shape."""
    from lumigrad._mitsuba import mitsuba_scene

    sc = mitsuba_scene(mi, shapes64, cam64, [], spp=ARGS.spp, integrator=integrator)
    params = mi.traverse(sc)
    key = f"shape{len(shapes64) - 1}.vertex_positions"
    return sc, params, key, np.array(params[key])


def mitsuba_grad(mi, dr, shapes64, cam64, guiding="octree"):
    """``seed -> (g [3], wall s, CPU s)``: ``prb_projective`` (or ``--integrator``) reverse mode at ``ARGS.spp``
    (sppc = sppp = sppi)."""
    integ = {"type": ARGS.integrator, "guiding": guiding}
    if ARGS.integrator == "prb_projective":
        integ["max_depth"] = ARGS.bounces + 1
    elif ARGS.bounces != 1:
        sys.exit("--integrator direct_projective needs --bounces 1")
    sc, params, key, init = mitsuba_setup(mi, shapes64, cam64, integ)
    offs = []
    for axis in range(3):
        o = np.zeros_like(init)
        o[axis::3] = 1.0
        offs.append(mi.Float(o))

    def run(seed):
        t0, c0 = time.perf_counter(), time.process_time()
        theta = [mi.Float(0.0) for _ in range(3)]
        pos = mi.Float(init)
        for t, o in zip(theta, offs):
            dr.enable_grad(t)
            pos = pos + t * o
        params[key] = pos
        params.update()
        img = mi.render(sc, params, spp=ARGS.spp, seed=seed)
        dr.backward(dr.mean(img, axis=None))
        g = np.array([float(dr.grad(t)[0]) for t in theta])
        dr.sync_thread()
        return g, time.perf_counter() - t0, time.process_time() - c0
    return run


def mitsuba_fd_reference(mi, shapes64, cam64):
    """``[ref_seeds, 3]``: CRN central differences of Mitsuba ``path`` renders (float64 image means)."""
    sc, params, key, init = mitsuba_setup(mi, shapes64, cam64, {"type": "path", "max_depth": ARGS.bounces + 1})
    out = []
    for seed in range(ARGS.ref_seeds):
        row = []
        for axis in range(3):
            f = []
            for sign in (1, -1):
                pos = init.copy()
                pos[axis::3] += sign * ARGS.h
                params[key] = mi.Float(pos)
                params.update()
                f.append(float(np.asarray(mi.render(sc, spp=ARGS.ref_spp, seed=1000 + seed)).mean(dtype=np.float64)))
            row.append((f[0] - f[1]) / (2 * ARGS.h))
        out.append(row)
        print(f"  reference seed {seed}: {np.round(row, 5)}", flush=True)
    return np.array(out)


def summarise(name, runs, ref):
    """One table row: mean +- s.e., bias, relative RMSE, median seconds, CPU x MSE."""
    g = np.array([r[0] for r in runs])
    wall = statistics.median(r[1] for r in runs)
    cpu = statistics.median(r[2] for r in runs)
    mean, se = g.mean(0), g.std(0, ddof=1) / len(g) ** 0.5
    n = np.linalg.norm(ref)
    mse = float(((g - ref) ** 2).sum(1).mean()) / n ** 2
    var = float(g.var(0, ddof=1).sum()) / n ** 2
    med = float(np.median(np.linalg.norm(g - ref, axis=1))) / n
    return {"name": name, "mean": mean, "med": med, "se": se, "bias": np.linalg.norm(mean - ref) / n, "se_rel": np.linalg.norm(se) / n,
            "rmse": mse ** 0.5, "std": var ** 0.5, "wall": wall, "cpu": cpu, "work": cpu * mse, "work_var": cpu * var}


def main():
    shapes64, cam64 = box_with_sphere(ARGS.res, ARGS.level)
    shapes, cam = box_with_sphere(ARGS.res, ARGS.level, dtype=torch.float32)
    nf = sum(int(s.mesh.faces.shape[0]) for s in shapes)
    mi = dr = None
    if not ARGS.no_mitsuba:
        try:
            from lumigrad._mitsuba import import_mitsuba

            mi, dr = import_mitsuba("llvm_ad_rgb")
            dr.set_thread_count(ARGS.threads)
            mi.set_log_level(mi.LogLevel.Error)
        except ImportError as e:
            print(f"Mitsuba unavailable: {e}")
    key = (ARGS.level if ARGS.ref_level is None else ARGS.ref_level, ARGS.res, ARGS.bounces)
    if ARGS.reference:
        t = time.perf_counter()
        fd = mitsuba_fd_reference(mi, shapes64, cam64)
        mean, se = fd.mean(0), fd.std(0, ddof=1) / len(fd) ** 0.5
        print(f"REFERENCE[{key}] = ({tuple(np.round(mean, 6).tolist())}, {tuple(np.round(se, 6).tolist())}, 'Mitsuba path CRN FD "
              f"h={ARGS.h}, {ARGS.ref_seeds} x {ARGS.ref_spp} spp') # {time.perf_counter() - t:.0f} s")
        REFERENCE[key] = (tuple(mean), tuple(se), "just computed")
    if ARGS.seeds == 0:
        return
    if key not in REFERENCE and not ARGS.variance_only:
        sys.exit(f"no reference for (level, res, bounces) = {key}: run with --reference (or --variance-only)")
    accel = prepare_trace(shapes)
    fns = {"lumigrad (edge)": lumigrad_grad(shapes, cam, accel)}
    if mi is not None:
        if not ARGS.no_guided:
            fns[f"Mitsuba {ARGS.integrator}"] = mitsuba_grad(mi, dr, shapes64, cam64)
        if ARGS.unguided:
            fns[f"Mitsuba {ARGS.integrator} (guiding none)"] = mitsuba_grad(mi, dr, shapes64, cam64, "none")
    for f in fns.values():
        f(10_000)  # warm-up (Dr.Jit's compile, Warp's module load)
    runs = {k: [] for k in fns}
    for seed in range(ARGS.seeds):
        for k, f in fns.items():
            runs[k].append(f(seed))
    lg = next(iter(fns))
    for seed in range(ARGS.seeds, ARGS.lumigrad_seeds):
        runs[lg].append(fns[lg](seed))
    if key in REFERENCE:
        ref, ref_se, ref_how = np.array(REFERENCE[key][0]), REFERENCE[key][1], REFERENCE[key][2]
    else:  # the estimators' pooled mean: the bias and RMSE columns mean nothing, the variance ones hold
        ref = np.mean([np.mean([r[0] for r in v], 0) for v in runs.values()], 0)
        ref_se, ref_how = (float("nan"),) * 3, "no reference: the estimators' pooled mean"
    if ARGS.save:
        np.savez(ARGS.save, ref=ref, **{k: np.array([r[0] for r in v]) for k, v in runs.items()})
    rows = [summarise(k, v, ref) for k, v in runs.items()]
    print(f"\nCornell box + icosphere-{ARGS.level} ({nf} triangles), {ARGS.res}^2, {ARGS.spp} spp, {ARGS.bounces} bounces, "
          f"{ARGS.threads} threads, seeds: lumigrad {len(runs[lg])}, Mitsuba {ARGS.seeds}; load average {os.getloadavg()[0]:.1f}")
    print(f"reference g_ref = {np.round(ref, 5)} +- {np.round(ref_se, 5)} ({ref_how}), "
          f"|g_ref| = {np.linalg.norm(ref):.5f}")
    print("| estimator | mean g | +- s.e. | bias (s.e.) | rel. RMSE | median rel. err. | rel. std | s | CPU s | CPU x MSE |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {np.round(r['mean'], 5)} | {np.round(r['se'], 5)} | {r['bias']:.3f} ({r['se_rel']:.3f}) | "
              f"{r['rmse']:.3f} | {r['med']:.3f} | {r['std']:.3f} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['work']:.2e} |")
    a = rows[0]
    for b in rows[1:]:
        print(f"\nlumigrad / {b['name']} at equal spp: time {a['wall'] / b['wall']:.2f}, CPU {a['cpu'] / b['cpu']:.2f}, "
              f"rel. RMSE {a['rmse'] / b['rmse']:.2f}, median rel. err. {a['med'] / b['med']:.2f}, MSE {(a['rmse'] / b['rmse']) ** 2:.2f}; "
              f"at equal error (CPU x MSE) {a['work'] / b['work']:.2f}, (CPU x variance) {a['work_var'] / b['work_var']:.2f}")


if __name__ == "__main__":
    main()
