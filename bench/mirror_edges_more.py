"""Cost of the boundary terms of silhouettes seen through two planar mirrors (``_trace_edges_mirror``, chains
camera -> A -> B) and seen in a planar mirror from a diffuse path vertex (``_trace_edges_indirect``'s mirror
samples) in a gradient render.

Scene: an icosphere (``--level``, Lambert) on a Lambert floor in the corner of two mirror walls at right angles
(each two triangles), lit by a point light, seen from above so that the sphere, its reflection in each wall and
its reflection in the corner (through both walls) are in view; ``--bounces`` bounces (3: the sphere's direct
light seen through both walls, and the floor's indirect light through a wall), ``--spp`` samples, default
edge and indirect samples. Timed: forward + backward of the image mean w.r.t. the sphere's vertices with both
new terms on, with the chains off, with the indirect mirror samples off, and with both off (the terms replaced
by no-ops), alternating in one process, medians over ``--reps`` rounds after one warm-up; wall time and the
process's CPU time.

Usage: ``python bench/mirror_edges_more.py [--res 64] [--level 3] [--spp 4] [--bounces 3] [--reps 5]``.
"""
from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lumigrad.render._trace_edges_indirect as indirect_edges  # noqa: E402
import lumigrad.render._trace_edges_mirror as mirror_edges  # noqa: E402
from lumigrad.geometry.primitives import icosphere  # noqa: E402
from lumigrad.render.path import prepare_trace  # noqa: E402
from lumigrad.scene import Camera, Mesh  # noqa: E402
from lumigrad.scene.lights import PointLight  # noqa: E402
from lumigrad.scene.materials import LambertMaterial  # noqa: E402
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings  # noqa: E402
from mirror_edges import _run  # noqa: E402  (bench/ is the script's folder)

_QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _scene(level: int, res: int):
    sv, sf = icosphere(level)
    sv = (sv * 0.5 + torch.tensor([0.0, 0.5, 0.0])).requires_grad_(True)
    floor = torch.tensor([[-2.0, 0, -2], [-2, 0, 3], [3, 0, 3], [3, 0, -2]])  # normal +y
    wall_z = torch.tensor([[-2.0, 0, -2], [3, 0, -2], [3, 2.5, -2], [-2, 2.5, -2]])  # z = -2, normal +z
    wall_x = torch.tensor([[-2.0, 0, -2], [-2, 2.5, -2], [-2, 2.5, 3], [-2, 0, 3]])  # x = -2, normal +x
    shapes = [Shape(Mesh(sv, sf), LambertMaterial(0.7)), Shape(Mesh(floor, _QUAD), LambertMaterial(0.6)),
              Shape(Mesh(wall_z, _QUAD), MirrorMaterial(0.9)), Shape(Mesh(wall_x, _QUAD), MirrorMaterial(0.9))]
    cam = Camera.look_at(torch.tensor([2.5, 2.5, 3.5]), torch.tensor([-0.8, 0.4, -0.8]), width=res, height=res,
                         fov_y_deg=50.0)
    return shapes, cam, [PointLight(torch.tensor([1.5, 3.0, 2.0]), intensity=20.0)], sv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--bounces", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    shapes, cam, lights, sv = _scene(a.level, a.res)
    accel = prepare_trace(shapes)
    st = TraceSettings(spp=a.spp, max_bounces=a.bounces, shadow_light_samples=0)
    samples, mirror_samples = mirror_edges.mirror_samples, indirect_edges._mirror_edge_samples

    def no_chain(sc, view, mirror, M, gen, second=None):
        return None if second is not None else samples(sc, view, mirror, M, gen)

    def no_indirect(sc, *args):
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=sc.dtype)

    modes = {"on": (samples, mirror_samples), "no chains": (no_chain, mirror_samples),
             "no ind. mirror": (samples, no_indirect), "off": (no_chain, no_indirect)}
    times: dict = {k: [] for k in modes}
    for rep in range(a.reps + 1):
        for name, (chain_fn, ind_fn) in modes.items():
            mirror_edges.mirror_samples, indirect_edges._mirror_edge_samples = chain_fn, ind_fn
            t = _run(shapes, cam, lights, sv, st, accel)
            if rep:
                times[name].append(t)
    mirror_edges.mirror_samples, indirect_edges._mirror_edge_samples = samples, mirror_samples
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    faces = sum(s.mesh.faces.shape[0] for s in shapes)
    cells = " | ".join(f"{k} {w * 1e3:.0f} ms ({c:.2f} cpu s)" for k, (w, c) in med.items())
    off = med["off"]
    ratios = ", ".join(f"{k}/off wall {w / off[0]:.2f} cpu {c / off[1]:.2f}" for k, (w, c) in med.items() if k != "off")
    print(f"| {a.res}^2, {faces} tris, {a.spp} spp, {a.bounces} bounces | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
