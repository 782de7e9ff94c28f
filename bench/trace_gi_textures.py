"""Textured materials under global illumination: the fused path kernel vs the torch path, side by side in one run.

Scene: the validation Cornell box (``tests/validation/mitsuba_scenes.cornell_box``), float32, with a textured
Lambert floor (256^2 RGB albedo) and a textured GGX back wall (256^2 RGB base colour, 256^2 roughness,
metallic 0), the other shapes untextured (``--tint``: the two blocks with random vertex colours, which multiply
their BRDF, differentiated too); ``--res``^2, ``--spp``, ``--bounces`` bounces, MIS, path replay
(``TraceSettings.replay``, as ``lumigrad trace material``), ``boundary="none"``. Cases: forward, and forward +
backward of the mean image w.r.t. the three textures, each by the kernel
(:mod:`lumigrad.render._path_fused`) and by the torch path (the kernel switched off); and the kernel on the
same scene with constant (mean-texel) parameters, for the cost of the lookups. Runs alternate between the
cases (median of ``--reps`` after a warm-up); process CPU seconds (all threads), which a shared machine
disturbs less than wall time.

Usage: ``PYTHONPATH=. python bench/trace_gi_textures.py [--res 64] [--spp 16] [--threads 1] [--reps 3] [--tint]``.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gi_args import gi_args  # noqa: E402

ARGS = gi_args(__doc__.split("\n")[0], threads=1, reps=3, add=lambda ap: ap.add_argument(
    "--tint", action="store_true", help="vertex colours on the blocks (with gradients)"))

import torch  # noqa: E402

from mitsuba_scenes import cornell_box  # noqa: E402

import lumigrad.render._path_fused as pf  # noqa: E402
from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    shapes64, cam64, _ = cornell_box(ARGS.res)
    cam = cam64.to(dtype=torch.float32)
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    alb = torch.rand(256, 256, 3, generator=g) * 0.6 + 0.2
    base = torch.rand(256, 256, 3, generator=g) * 0.6 + 0.2
    rough = torch.rand(256, 256, 1, generator=g) * 0.6 + 0.2
    vcols = [torch.rand(s.mesh.verts.shape[0], 3, generator=g) * 0.5 + 0.5 for s in shapes64[5:7]]

    def shapes(textured: bool, grad: bool):
        ts = [t.clone().requires_grad_(grad) for t in [alb, base, rough] + (vcols if ARGS.tint else [])]
        out = []
        for i, s in enumerate(shapes64):
            m = Mesh(s.mesh.verts.float(), s.mesh.faces, uvs=uv if i in (0, 2) else None,
                     faces_uvs=s.mesh.faces if i in (0, 2) else None,
                     vert_colors=ts[i - 2] if ARGS.tint and i in (5, 6) else None)
            a = s.material.albedo
            mat = LambertMaterial(a.float() if isinstance(a, torch.Tensor) else a)
            if i == 0:
                mat = LambertMaterial(TextureParam(ts[0]) if textured else ts[0].mean((0, 1)))
            elif i == 2:
                mat = GGXMaterial(TextureParam(ts[1]) if textured else ts[1].mean((0, 1)),
                                  TextureParam(ts[2]) if textured else ts[2].mean(), 0.0)
            out.append(Shape(m, mat, None if s.emission is None else s.emission.float()))
        return out, ts

    accel = prepare_trace(shapes(True, False)[0])
    fused_ok = pf.fused_path_ok

    def case(textured: bool, grad: bool, fused: bool):
        def run():
            sh, ts = shapes(textured, grad)
            st = TraceSettings(spp=ARGS.spp, max_bounces=ARGS.bounces, boundary="none", replay=True)
            pf.fused_path_ok = fused_ok if fused else (lambda sc: False)
            try:
                with torch.set_grad_enabled(grad):
                    img = render_trace(sh, cam, [], st, accel=accel).image
                    if grad:
                        img.mean().backward()
            finally:
                pf.fused_path_ok = fused_ok
        return run

    cases = {"textured, torch path, fwd": case(True, False, False), "textured, kernel, fwd": case(True, False, True),
             "textured, torch path, fwd+bwd": case(True, True, False),
             "textured, kernel, fwd+bwd": case(True, True, True),
             "constant, kernel, fwd": case(False, False, True), "constant, kernel, fwd+bwd": case(False, True, True)}
    for f in cases.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(ARGS.reps):
        for k, f in cases.items():
            t = time.process_time()
            f()
            times[k].append(time.process_time() - t)
    print(f"Cornell box, textured floor + back wall{', tinted blocks' if ARGS.tint else ''}, {ARGS.res}^2, {ARGS.spp} spp, {ARGS.bounces} bounces, replay, "
          f"{ARGS.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print("| case | CPU s (median) | min |\n|---|---|---|")
    med = {k: statistics.median(ts) for k, ts in times.items()}
    for k, ts in times.items():
        print(f"| {k} | {med[k]:.3f} | {min(ts):.3f} |")
    for what in ("fwd", "fwd+bwd"):
        print(f"torch path / kernel ({what}): {med[f'textured, torch path, {what}'] / med[f'textured, kernel, {what}']:.2f}"
              f"; textured / constant kernel: {med[f'textured, kernel, {what}'] / med[f'constant, kernel, {what}']:.2f}")


if __name__ == "__main__":
    main()
