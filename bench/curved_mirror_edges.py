"""Cost of the curved-mirror boundary term (``lumigrad/render/_trace_edges_curved.py``) in a gradient render.

Scene: a chrome ball (icosphere ``--level``, smooth-shaded, ``MirrorMaterial``) in front of the camera; behind
the camera a large emitter faces it and a black quad hides part of the emitter (both seen only in the ball),
one bounce, ``--spp`` samples, default edge samples (``H * W`` per term), float32. Timed: forward + backward
of the image mean w.r.t. the quad's vertices (``--wrt quad``: with a still camera and ball the term samples
the quad's edges only) or the camera pose (``--wrt camera``: every candidate edge), with the curved term on
and off (``curved_silhouettes`` replaced by a no-op), alternating in one process, medians over ``--reps``
rounds after one warm-up each; wall time and the process's CPU time.

Usage: ``python bench/curved_mirror_edges.py [--res 64] [--level 3] [--spp 4] [--reps 5] [--wrt quad]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lumigrad.render._trace_edges_curved as curved  # noqa: E402
from lumigrad.geometry.primitives import icosphere  # noqa: E402
from lumigrad.render.path import prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Camera, Mesh  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings  # noqa: E402

QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _rect(x0, x1, y0, y1, z):
    return torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


def _scene(level: int, res: int, wrt: str):
    sv, sf = icosphere(level)
    qv = _rect(0.4, 5.4, -2.6, 2.6, 4.5).requires_grad_(wrt == "quad")
    w2c = Camera.look_at(torch.tensor([0.0, 0.0, 3.5]), torch.zeros(3), width=res, height=res, fov_y_deg=40.0)
    pose = w2c.world_to_cam.clone().requires_grad_(wrt == "camera")
    cam = Camera(pose, w2c.K, res, res, w2c.near, w2c.far)
    shapes = [Shape(Mesh(sv, sf), MirrorMaterial(1.0)),
              Shape(Mesh(_rect(-12, 12, -12, 12, 6.0), QUAD.flip(1)), LambertMaterial(0.0), emission=torch.ones(3)),
              Shape(Mesh(qv, QUAD), LambertMaterial(0.0))]
    return shapes, cam, qv if wrt == "quad" else pose


def _run(shapes, cam, param, st, accel) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    img = render_trace(shapes, cam, [], st, accel=accel).image
    torch.autograd.grad(img.mean(), param)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--wrt", choices=["quad", "camera"], default="quad")
    a = ap.parse_args()
    shapes, cam, param = _scene(a.level, a.res, a.wrt)
    accel = prepare_trace(shapes)
    st = TraceSettings(spp=a.spp, shadow_light_samples=0)
    real = curved.curved_silhouettes
    modes = {"on": real, "off": lambda *args: None}
    times: dict = {k: [] for k in modes}
    for rep in range(a.reps + 1):
        for name, fn in modes.items():
            curved.curved_silhouettes = fn
            t = _run(shapes, cam, param, st, accel)
            if rep:
                times[name].append(t)
    curved.curved_silhouettes = real
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    faces = sum(s.mesh.faces.shape[0] for s in shapes)
    cells = " | ".join(f"{k} {w * 1e3:.0f} ms ({c:.2f} cpu s)" for k, (w, c) in med.items())
    print(f"| {a.res}^2, {faces} tris, {a.spp} spp, wrt {a.wrt} | {cells} | on/off wall "
          f"{med['on'][0] / med['off'][0]:.2f}, cpu {med['on'][1] / med['off'][1]:.2f} |")


if __name__ == "__main__":
    main()
