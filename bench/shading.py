"""Deferred shading: the fused Warp op (``lumigrad.ops.deferred_shade``) vs ``shade()``'s torch path, in one run.

Two workloads, each with the fused op on and off (``lumigrad.shade.deferred.FUSED``), runs alternating:

* ``shade``: ``lumigrad.shade.shade`` forward + backward (to normals, points, view directions and
  the light and material tensors) on random ``[1, H, W, 3]`` G-buffers with half the pixels masked;
* ``render_mesh``: a whole ``render_mesh`` step (icosphere 4, 5k triangles, camera at distance 3,
  45 degree FoV, default "edge" visibility) with an MSE to a constant image, backward to the vertices.

Materials and lights: Lambert with one directional light; Lambert with a directional, a point and an
ambient light; Blinn-Phong and GGX with a directional and a point light. Medians over ``--reps``
rounds; ``--threads 1`` (default) reports the calling thread's CPU time (all launches then run on it,
so the figures hold on a loaded machine), ``--threads 2`` wall time.

Usage: ``python bench/shading.py [--res 256] [--reps 9] [--threads 1] [--out FILE]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--res", type=int, default=256)
p.add_argument("--reps", type=int, default=9)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", help="also write the table as markdown to this file")
ARGS = p.parse_args()
os.environ["LUMIGRAD_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)

import lumigrad.shade.deferred as deferred  # noqa: E402
from lumigrad.geometry import icosphere  # noqa: E402
from lumigrad.render import render_mesh  # noqa: E402
from lumigrad.scene import Camera, Mesh  # noqa: E402
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight  # noqa: E402
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial  # noqa: E402
from lumigrad.shade import shade  # noqa: E402

CLOCK = time.thread_time if ARGS.threads == 1 else time.perf_counter


def _cases() -> dict:
    t = torch.tensor
    sun = DirectionalLight(t([0.3, 0.5, 1.0]))
    bulb = PointLight(t([1.0, 2.0, 3.0]), intensity=10.0)
    rgb = t([0.7, 0.5, 0.3])
    return {
        "Lambert, 1 directional": (LambertMaterial(rgb), [sun]),
        "Lambert, directional + point + ambient": (LambertMaterial(rgb), [sun, bulb, AmbientLight(t([0.1, 0.1, 0.1]))]),
        "Blinn-Phong, directional + point": (BlinnPhongMaterial(rgb, t([0.2, 0.2, 0.2]), t(20.0)), [sun, bulb]),
        "GGX, directional + point": (GGXMaterial(rgb, t(0.4), t(0.1)), [sun, bulb]),
    }


def _shade_step(material, lights, bufs):
    pts, nrm, view, mask = (b.clone().requires_grad_(b.dtype.is_floating_point and k < 3) for k, b in enumerate(bufs))
    img = shade(material, lights, points=pts, normals=nrm, view_dirs=view, mask=mask)
    img.sum().backward()


def _render_step(material, lights, verts, faces, cam):
    v = verts.clone().requires_grad_(True)
    img = render_mesh(Mesh(v, faces), cam, material, lights).image
    ((img - 0.25) ** 2).mean().backward()


def _time(fn) -> list:
    out = []
    for fused in (True, False):
        deferred.FUSED = fused
        fn()
        t = CLOCK()
        fn()
        out.append(CLOCK() - t)
    return out


def main():
    res = ARGS.res
    g = torch.Generator().manual_seed(0)
    bufs = [torch.randn(1, res, res, 3, generator=g) for _ in range(3)]
    bufs.append((torch.rand(1, res, res, 1, generator=g) > 0.5).float())
    verts, faces = icosphere(4)
    cam = Camera.look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3), width=res, height=res, fov_y_deg=45.0)
    rows = []
    for name, (material, lights) in _cases().items():
        for workload, fn in (("shade", lambda: _shade_step(material, lights, bufs)),
                             ("render_mesh", lambda: _render_step(material, lights, verts.float(), faces, cam))):
            runs = [_time(fn) for _ in range(ARGS.reps)]
            fused = 1e3 * statistics.median(r[0] for r in runs)
            torch_ms = 1e3 * statistics.median(r[1] for r in runs)
            rows.append((workload, name, fused, torch_ms))
            print(f"{workload:12s} {name:40s} fused {fused:7.2f} ms  torch {torch_ms:7.2f} ms  ratio {fused / torch_ms:.2f}",
                  flush=True)
    clock = "thread CPU ms, 1 thread" if ARGS.threads == 1 else f"wall ms, {ARGS.threads} threads"
    lines = [f"deferred shading, {res}^2, median of {ARGS.reps} alternating rounds ({clock}); torch {torch.__version__}", "",
             "| workload | material, lights | fused | torch path | fused / torch |", "|---|---|---|---|---|"]
    lines += [f"| {w} | {n} | {f:.2f} | {t:.2f} | {f / t:.2f} |" for w, n, f, t in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if ARGS.out:
        from lumigrad._runtime.files import write_text_atomic

        write_text_atomic(ARGS.out, text)


if __name__ == "__main__":
    sys.exit(main())
