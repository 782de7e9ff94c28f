"""Cost of the indirect hard-shadow boundary term (``lumigrad.render._trace_edges_shadow_indirect``).

Scene: the validation Cornell box (``tests/validation/mitsuba_scenes.cornell_box``) with its ceiling
emitter replaced by a point light under the ceiling (``--area``: the emitter kept, whose penumbrae are sampled
through ``TraceSettings.shadow_light_samples`` virtual point lights), float64 (as the gradient tests); the gradient of the
mean image w.r.t. the tall block's translation. Rows: forward + backward with the term (the default) and
without it (``shadow_casters`` patched to return no lights), and with the term's former per-light loop
(``tests/trace/_shadow_indirect_looped.py``: the same samples, one pass per light instead of one batch for all
lights), alternating in one process, median of ``--reps`` rounds after a warm-up, process CPU time
(``time.process_time``) and wall time.

Usage: ``PYTHONPATH=. python bench/trace_indirect_shadows.py [--res 32] [--spp 4] [--bounces 3] [--area]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--res", type=int, default=32)
ap.add_argument("--spp", type=int, default=4)
ap.add_argument("--bounces", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--area", action="store_true", help="keep the ceiling emitter instead of the point light")
ARGS = ap.parse_args()
os.environ.setdefault("LUMIGRAD_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "validation"))
sys.path.insert(0, os.path.join(ROOT, "tests", "trace"))

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

from mitsuba_scenes import cornell_box  # noqa: E402

import _shadow_indirect_looped as looped  # noqa: E402
import lumigrad.render._trace_edges_indirect as indirect  # noqa: E402
from lumigrad.render.path import render_trace  # noqa: E402
from lumigrad.scene import Mesh  # noqa: E402
from lumigrad.scene.lights import PointLight  # noqa: E402
from lumigrad.scene.trace_types import Shape, TraceSettings  # noqa: E402

ON = indirect.shadow_casters, indirect.shadow_samples
LOOPED = looped.shadow_casters, looped.shadow_samples
OFF = (lambda sc, b, virtual=(): ([], None)), ON[1]


def grad(term=ON) -> torch.Tensor:
    indirect.shadow_casters, indirect.shadow_samples = term
    shapes, cam, _ = cornell_box(ARGS.res)
    if not ARGS.area:
        shapes = shapes[:-1]  # the ceiling emitter: replaced by the point light
    shift = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    tall = shapes[5]
    shapes[5] = Shape(Mesh(tall.mesh.verts + shift, tall.mesh.faces), tall.material)
    light = PointLight(torch.tensor([0.0, 0.9, 0.0], dtype=torch.float64), intensity=3.0)
    st = TraceSettings(max_bounces=ARGS.bounces, spp=ARGS.spp, seed=0)
    img = render_trace(shapes, cam, [] if ARGS.area else [light], st).image
    return torch.autograd.grad(img.mean(), shift)[0]


def main() -> None:
    rows = {"with the term (batched)": lambda: grad(ON), "with the term (per-light loop)": lambda: grad(LOOPED),
            "without": lambda: grad(OFF)}
    for f in rows.values():
        f()
    cpu, wall = {k: [] for k in rows}, {k: [] for k in rows}
    for _ in range(ARGS.reps):
        for k, f in rows.items():
            c0, w0 = time.process_time(), time.perf_counter()
            g = f()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    print(f"res {ARGS.res}, spp {ARGS.spp}, bounces {ARGS.bounces}, threads {ARGS.threads}, reps {ARGS.reps}, "
          f"{'area light' if ARGS.area else 'point light'}")
    print("| config | cpu s | wall s | grad (last run) |\n|---|---|---|---|")
    base = statistics.median(cpu["without"])
    for k in rows:
        c = statistics.median(cpu[k])
        print(f"| {k} | {c:.3f} ({c / base:.2f}x) | {statistics.median(wall[k]):.3f} | {g.tolist() if k == 'without' else ''} |")
    print("with the term (batched):", grad(ON).tolist())
    print("with the term (per-light loop):", grad(LOOPED).tolist())


if __name__ == "__main__":
    main()
