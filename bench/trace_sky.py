"""The fused path kernel vs the torch path on an SH-lit scene, alternating in one process.

Scene: the validation Cornell box (``tests/validation/mitsuba_scenes.cornell_box``) without its ceiling and
ceiling light, lit from above by an order-2 :class:`SHEnvironmentLight` (a bright, tinted sky towards +y and +x)
plus a dim :class:`AmbientLight`, float32; ``--res``, ``--spp``, ``--bounces`` (default 64^2, 16 spp, 3).
Rows: forward, and forward + backward of the mean image w.r.t. the SH coefficients and the ambient colour
(radiance kept; ``--replay``: ``TraceSettings.replay`` too), by the fused kernel (``lumigrad.render._path_fused``)
and by the torch path (the kernel switched off). Median process CPU seconds (all threads) and wall seconds of
``--reps`` alternating rounds after a warm-up.

Usage: ``PYTHONPATH=. python bench/trace_sky.py [--res 64] [--spp 16] [--bounces 3] [--threads 2] [--reps 5]``.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gi_args import gi_args  # noqa: E402

ARGS = gi_args(__doc__.split("\n")[0], threads=2, reps=5, add=lambda ap: ap.add_argument(
    "--replay", action="store_true", help="also time fwd+bwd with TraceSettings.replay"))

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from mitsuba_scenes import cornell_box  # noqa: E402

import lumigrad.render._path_fused as pf  # noqa: E402
from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.lights import AmbientLight, SHEnvironmentLight  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402


def main():
    shapes64, cam64, _ = cornell_box(ARGS.res)
    cam = cam64.to(dtype=torch.float32)
    shapes = [Shape(Mesh(s.mesh.verts.float(), s.mesh.faces), LambertMaterial(s.material.albedo.float()))
              for i, s in enumerate(shapes64) if i not in (1, 7)]  # no ceiling, no ceiling light
    tint = torch.tensor([1.0, 0.8, 0.6])
    coeffs0 = SHEnvironmentLight.from_function(
        lambda d: 0.3 + 3.0 * d[:, 1:2].clamp_min(0) ** 2 * tint + 0.5 * d[:, 0:1].clamp_min(0), order=2).coeffs
    amb0 = torch.tensor([0.05, 0.05, 0.08])
    accel = prepare_trace(shapes)
    fused_ok = pf.fused_path_ok

    def run(fused, grad, replay=False):
        def f():
            coeffs, amb = coeffs0.clone().requires_grad_(grad), amb0.clone().requires_grad_(grad)
            st = TraceSettings(spp=ARGS.spp, max_bounces=ARGS.bounces, boundary="none", replay=replay)
            pf.fused_path_ok = fused_ok if fused else (lambda sc: False)
            try:
                with torch.set_grad_enabled(grad):
                    img = render_trace(shapes, cam, [SHEnvironmentLight(coeffs), AmbientLight(amb)], st,
                                       accel=accel).image
                    if grad:
                        img.mean().backward()
            finally:
                pf.fused_path_ok = fused_ok
            return img.detach()
        return f

    fns = {"kernel fwd": run(True, False), "torch fwd": run(False, False),
           "kernel fwd+bwd": run(True, True), "torch fwd+bwd": run(False, True)}
    if ARGS.replay:
        fns.update({"kernel fwd+bwd (replay)": run(True, True, True), "torch fwd+bwd (replay)": run(False, True, True)})
    means = {k: float(f().mean()) for k, f in fns.items()}  # warm-up (compiles), and a sanity figure
    ts = {k: [] for k in fns}
    cs = {k: [] for k in fns}
    for _ in range(ARGS.reps):
        for k, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            ts[k].append(time.perf_counter() - t)
            cs[k].append(time.process_time() - c)
    print(f"open Cornell box under an SH sky, {ARGS.res}^2, {ARGS.spp} spp, {ARGS.bounces} bounces, float32, "
          f"{ARGS.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print("| run | image mean | seconds | CPU seconds |\n|---|---|---|---|")
    for k in fns:
        print(f"| {k} | {means[k]:.4f} | {statistics.median(ts[k]):.3f} | {statistics.median(cs[k]):.3f} |")
    for what in ("fwd", "fwd+bwd", "fwd+bwd (replay)"):
        if f"kernel {what}" in cs:
            ratio = statistics.median(cs[f"kernel {what}"]) / statistics.median(cs[f"torch {what}"])
            print(f"kernel / torch CPU {what}: {ratio:.2f}")


if __name__ == "__main__":
    main()
