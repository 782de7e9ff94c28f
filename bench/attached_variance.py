"""Attached vs detached camera hits (``TraceSettings.interior``) on a fitting loss: which shape gradients each
estimator serves.

Scene: ``bench/_gi_scenes.box_with_sphere`` (the Cornell box with a floating icosphere, its area light),
``--bounces`` 1 or 3. Loss: the per-pixel MSE against a target rendered (``--target-spp``) with the sphere moved by
(0.03, 0.02, -0.02), as a pose or shape fit starts. Two gradients of that one loss per render:

* the sphere's **translation** (3 numbers: every vertex moves together, a rigid parameter);
* the sphere's **vertex positions** (one 3-vector per vertex: a mesh fit).

Per interior estimator, ``--seeds`` gradients at ``--spp``, alternating: mean and standard deviation of the
translation gradient, the total variance of the per-vertex gradient field (summed over vertices), and the CPU
seconds per gradient (process time). Both estimators are unbiased in expectation (``tests/trace/test_attached.py``
checks them against central differences), so the ratio ``CPU x variance`` attached / detached is the ratio of the
times they need for equal error; the translation means are compared (z-score) and, with ``--fd N``, against central
differences of ``N`` common-random-number pairs of ``--fd-spp`` renders (lumigrad forward, float64; the loss's
own noise term is small at that spp).

With ``--correlated`` (``TraceSettings(decorrelate=False)``, the only behaviour before session 15) the image and
its derivatives share their samples, and the MSE's gradient carries the covariance of their noise: that run shows
the bias ``decorrelate`` removes.

Usage: ``PYTHONPATH=. python bench/attached_variance.py [--level 4] [--res 32] [--spp 4] [--bounces 1] [--seeds 32]
[--fd 6] [--correlated] [--first-seed 0]``; figures in ``bench/results_trace14.md``.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gi_args import gi_args  # noqa: E402


def _extra(ap):
    ap.set_defaults(res=32, spp=4, bounces=1)
    ap.add_argument("--level", type=int, default=4, help="icosphere subdivisions (4 / 6: 5k / 82k triangles)")
    ap.add_argument("--seeds", type=int, default=32, help="gradients per estimator")
    ap.add_argument("--target-spp", type=int, default=1024)
    ap.add_argument("--fd", type=int, default=0, help="central-difference pairs for the translation gradient")
    ap.add_argument("--fd-spp", type=int, default=2048)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--correlated", action="store_true",
                    help="TraceSettings(decorrelate=False): the image and its derivatives from the same samples "
                         "(the gradient of the MSE then carries the covariance of their noise)")


ARGS = gi_args(__doc__.split("\n")[0], threads=2, reps=0, add=_extra)

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from _gi_scenes import box_with_sphere  # noqa: E402

from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402

MOVE = (0.03, 0.02, -0.02)


def _moved(shapes, shift):
    s = shapes[-1]
    return shapes[:-1] + [Shape(Mesh(s.mesh.verts + shift, s.mesh.faces), s.material)]


def _gradients(shapes, cam, accel, target, interior):
    """``(translation [S, 3], vertices [S, V, 3], CPU s per gradient)``."""
    gt, gv, cpu = [], [], 0.0
    for seed in range(ARGS.seeds):
        c0 = time.process_time()
        shift = torch.zeros(3, dtype=target.dtype, requires_grad=True)
        sh = _moved(shapes, shift)
        st = TraceSettings(spp=ARGS.spp, max_bounces=ARGS.bounces, seed=ARGS.first_seed + seed, interior=interior,
                           decorrelate=not ARGS.correlated)
        img = render_trace(sh, cam, [], st, accel=accel).image
        ((img - target) ** 2).mean().backward(inputs=[shift, sh[-1].mesh.verts])
        cpu += time.process_time() - c0
        gt.append(shift.grad.double())
        gv.append(sh[-1].mesh.verts.grad.double())
    return torch.stack(gt), torch.stack(gv), cpu / ARGS.seeds


def _central_differences(shapes64, cam64, target):
    accel = prepare_trace(shapes64)
    h, rows = 5e-3, []
    with torch.no_grad():
        for seed in range(ARGS.fd):
            row = []
            for axis in range(3):
                e = torch.zeros(3, dtype=torch.float64)
                e[axis] = h
                st = TraceSettings(spp=ARGS.fd_spp, max_bounces=ARGS.bounces, seed=500 + seed, boundary="none")
                f = [float(((render_trace(_moved(shapes64, s * e), cam64, [], st, accel=accel).image
                             - target.double()) ** 2).mean()) for s in (1, -1)]
                row.append((f[0] - f[1]) / (2 * h))
            rows.append(row)
    fd = torch.tensor(rows, dtype=torch.float64)
    return fd.mean(0), fd.std(0) / len(rows) ** 0.5


def main():
    shapes, cam = box_with_sphere(ARGS.res, ARGS.level, dtype=torch.float32)
    accel = prepare_trace(shapes)
    with torch.no_grad():
        target = render_trace(_moved(shapes, torch.tensor(MOVE)), cam, [],
                              TraceSettings(spp=ARGS.target_spp, max_bounces=ARGS.bounces, seed=999),
                              accel=accel).image
    print(f"Cornell box + icosphere-{ARGS.level} ({shapes[-1].mesh.faces.shape[0]} sphere triangles), {ARGS.res}^2, "
          f"{ARGS.spp} spp, {ARGS.bounces} bounce(s), {ARGS.seeds} seeds, MSE loss against the sphere moved by {MOVE}")
    res = {i: _gradients(shapes, cam, accel, target, i) for i in ("detached", "attached")}
    print("| interior | translation gradient mean | std | per-vertex variance (sum) | CPU s |")
    print("|---|---|---|---|---|")
    for name, (gt, gv, cpu) in res.items():
        print(f"| {name} | {gt.mean(0).numpy().round(7)} | {gt.std(0).numpy().round(7)} | "
              f"{float(gv.var(0).sum()):.3e} | {cpu:.3f} |")
    (td, vd, cd), (ta, va, ca) = res["detached"], res["attached"]
    n = ARGS.seeds
    z = (ta.mean(0) - td.mean(0)) / (ta.var(0) / n + td.var(0) / n).sqrt()
    print(f"attached / detached, CPU x variance: translation {float(ca * ta.var(0).sum() / (cd * td.var(0).sum())):.3f}"
          f", per-vertex field {float(ca * va.var(0).sum() / (cd * vd.var(0).sum())):.1f}; translation means "
          f"z = {z.numpy().round(2)}")
    if ARGS.fd:
        shapes64, cam64 = box_with_sphere(ARGS.res, ARGS.level)
        fd, se = _central_differences(shapes64, cam64, target)
        print(f"central differences ({ARGS.fd} x {ARGS.fd_spp} spp): {fd.numpy().round(7)} +- {se.numpy().round(7)}")
        for name, (gt, _, _) in res.items():
            zz = (gt.mean(0) - fd) / (gt.var(0) / n + se ** 2).sqrt()
            print(f"  {name}: z = {zz.numpy().round(2)}")


if __name__ == "__main__":
    main()
