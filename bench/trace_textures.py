"""Cost of textured materials in ``render_trace``: constant vs textured parameters, side by side in one run.

Scene: a plane (``plane(4, 64)``, 8k triangles, UVs spanning [0, 1]^2) under one point light, 128^2,
4 spp, direct lighting, ``boundary="none"``; forward + backward of the mean image w.r.t. the material
tensors. Cases: Lambert (fused direct path) with a constant albedo vs a 256^2 RGB albedo texture, GGX
(general path) constant vs textured base colour + roughness. Runs alternate between the cases; the
table gives process CPU seconds (median and min over --reps after a warm-up), which a shared machine
disturbs less than wall time.

Usage: ``PYTHONPATH=. python bench/trace_textures.py [--threads 1] [--reps 5]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--reps", type=int, default=5)
ARGS = ap.parse_args()
os.environ.setdefault("LUMIGRAD_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from lumigrad.geometry.primitives import plane  # noqa: E402
from lumigrad.render.path import TraceSettings, prepare_trace, render_trace  # noqa: E402
from lumigrad.scene import Camera, Mesh  # noqa: E402
from lumigrad.scene.lights import PointLight  # noqa: E402
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam  # noqa: E402
from lumigrad.scene.trace_types import Shape  # noqa: E402


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    v, f = plane(4.0, 64)
    mesh = Mesh(v, f, uvs=torch.stack([(v[:, 0] + 2) / 4, (2 - v[:, 2]) / 4], -1))
    cam = Camera.look_at(torch.tensor([0.0, 2.0, 2.5]), torch.zeros(3), width=128, height=128)
    light = [PointLight(torch.tensor([0.5, 2.0, 1.0]), intensity=6.0)]
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(256, 256, 3, generator=g).requires_grad_(True)
    rough = torch.rand(256, 256, 1, generator=g).requires_grad_(True)
    const = torch.tensor([0.5, 0.6, 0.7], requires_grad=True)
    cases = {
        "Lambert, constant albedo": lambda: LambertMaterial(const),
        "Lambert, albedo texture": lambda: LambertMaterial(TextureParam(tex)),
        "GGX, constant": lambda: GGXMaterial(const, 0.5, 0.0),
        "GGX, base colour + roughness textures": lambda: GGXMaterial(TextureParam(tex), TextureParam(rough), 0.0),
    }
    accel = prepare_trace([Shape(mesh)])
    st = TraceSettings(spp=4, boundary="none")
    times: dict[str, list[float]] = {k: [] for k in cases}
    for rep in range(ARGS.reps + 1):
        for k, make in cases.items():
            t = time.process_time()
            render_trace([Shape(mesh, make())], cam, light, st, accel=accel).image.mean().backward()
            if rep:
                times[k].append(time.process_time() - t)
    print("| case | fwd+bwd cpu s (median) | min | vs constant |\n|---|---|---|---|")
    base = None
    for k, ts in times.items():
        med = statistics.median(ts)
        base = med if "constant" in k else base
        print(f"| {k} | {med:.3f} | {min(ts):.3f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
