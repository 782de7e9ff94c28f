"""Cost of the planar-mirror boundary term (``lumigrad/render/_trace_edges_mirror.py``) in a gradient render.

Scene: an icosphere (``--level``, Lambert) standing on a mirror floor (two triangles), lit by a point
light, seen from above at an angle so that the sphere and its reflection are both in view; direct
light plus one mirror bounce (``max_bounces=2``), ``--spp`` samples, default edge samples (one per
pixel per term). Timed: forward + backward of the image mean w.r.t. the sphere's vertices, with the
mirror term on and off (``mirror_silhouettes`` replaced by a no-op), alternating in one process,
and with only its silhouettes (its shadow sampler replaced by a no-op), medians over ``--reps`` rounds
after one warm-up each; wall time and the process's CPU time.

Usage: ``python bench/mirror_edges.py [--res 128] [--level 3] [--spp 4] [--reps 5]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lumigrad.render._trace_edges_mirror as mirror_edges  # noqa: E402
from lumigrad.geometry.primitives import icosphere  # noqa: E402
from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Camera, Mesh  # noqa: E402
from lumigrad.scene.lights import PointLight  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings  # noqa: E402


def _scene(level: int, res: int):
    sv, sf = icosphere(level)
    sv = (sv * 0.5 + torch.tensor([0.0, 0.5, 0.0])).requires_grad_(True)
    fv = torch.tensor([[-3.0, 0, -3], [3, 0, -3], [3, 0, 3], [-3, 0, 3]])
    ff = torch.tensor([[0, 2, 1], [0, 3, 2]], dtype=torch.int32)  # normal +y
    shapes = [Shape(Mesh(sv, sf), LambertMaterial(0.7)), Shape(Mesh(fv, ff), MirrorMaterial(0.8))]
    cam = Camera.look_at(torch.tensor([0.0, 1.2, 3.0]), torch.tensor([0.0, 0.2, 0.0]), width=res, height=res,
                         fov_y_deg=40.0)
    return shapes, cam, [PointLight(torch.tensor([1.5, 3.0, 2.0]), intensity=20.0)], sv


def _run(shapes, cam, lights, sv, st, accel) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    img = render_trace(shapes, cam, lights, st, accel=accel).image
    torch.autograd.grad(img.mean(), sv)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    shapes, cam, lights, sv = _scene(a.level, a.res)
    accel = prepare_trace(shapes)
    st = TraceSettings(spp=a.spp, max_bounces=2, shadow_light_samples=0)
    real, real_shadow = mirror_edges.mirror_silhouettes, mirror_edges._shadow_boundary
    # (mirror term, its shadow sampler): all on, silhouettes only, all off
    modes = {"on": (real, real_shadow), "sil": (real, lambda *args, **kw: None), "off": (lambda *args: None, None)}
    times: dict = {k: [] for k in modes}
    for rep in range(a.reps + 1):
        for name, (fn, shadow) in modes.items():
            mirror_edges.mirror_silhouettes, mirror_edges._shadow_boundary = fn, shadow
            t = _run(shapes, cam, lights, sv, st, accel)
            if rep:
                times[name].append(t)
    mirror_edges.mirror_silhouettes, mirror_edges._shadow_boundary = real, real_shadow
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    faces = sum(s.mesh.faces.shape[0] for s in shapes)
    cells = " | ".join(f"{k} {w * 1e3:.0f} ms ({c:.2f} cpu s)" for k, (w, c) in med.items())
    print(f"| {a.res}^2, {faces} tris, {a.spp} spp | {cells} | on/off wall {med['on'][0] / med['off'][0]:.2f}, "
          f"cpu {med['on'][1] / med['off'][1]:.2f}; sil/off wall {med['sil'][0] / med['off'][0]:.2f}, "
          f"cpu {med['sil'][1] / med['off'][1]:.2f} |")


if __name__ == "__main__":
    main()
