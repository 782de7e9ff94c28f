"""W2: a whole differentiable raster step with visibility gradients, lumigrad vs DRTK, in one run.

project -> rasterize -> interpolate vertex normals -> Lambert (albedo 0.7, one
directional light) -> visibility method -> MSE vs a constant 0.25 image ->
backward to the vertex positions. Icospheres 4 / 6 / 8 (5k / 82k / 1.3M
triangles) at 256^2 / 512^2 / 512^2, camera at distance 3, 45 degree FoV.

Columns (median ms): ``shading`` (the shading part of DRTK's step alone, in torch: normalise the
interpolated normals, Lambert, mask, MSE and their backward, on saved inputs), ``lg shading`` (the
same with lumigrad's ``shade()``, which lumigrad's steps use: a Lambert material and a directional
light of intensity pi, so ``albedo / pi * E * cos`` is the same ``0.7 cos``), ``edge`` (``edge_grad``
on the shading), ``edge+rim`` (what ``render_mesh`` runs by default: ``edge_rim`` before the
shading, then ``edge_grad(..., rim=)``), ``edge+rim, torch shading`` (the same step with DRTK's
torch shading, to show what the shading op is worth),
``antialias`` (lumigrad's nvdiffrast-style op), ``drtk`` (DRTK's CPU kernels:
rasterize -> render -> interpolate -> ``edge_grad_estimator``), and the ratio
edge / drtk. DRTK is used when ``import drtk`` works; build its CPU kernels with
``../shared/peers/drtk_build_cpu.py`` and point ``DRTK_PATH`` at the checkout.
The gradient of the scale of the sphere (d loss / d s, s = 1) is printed for
each method too, so that speed is compared at known accuracy.

Usage: ``python bench/raster_w2.py [--threads 2] [--reps 7] [--quick]``; also
called from ``bench/raster.py``.
"""
from __future__ import annotations

import functools
import math
import os
import statistics
import sys
import time

CASES = [(4, 256), (6, 512), (8, 512)]
FOV_Y_DEG, DIST, NEAR, FAR = 45.0, 3.0, 0.1, 10.0
ALBEDO = 0.7


def clip_positions(verts):
    """OpenGL camera at (0, 0, DIST) looking at the origin, y up: ``[1, V, 4]`` clip space (numpy verts in);
    the camera of every rasterizer benchmark here (raster.py, raster_profile.py, raster_ab.py)."""
    import torch

    t = 1.0 / math.tan(math.radians(FOV_Y_DEG) / 2)
    proj = torch.tensor(
        [[t, 0, 0, 0], [0, t, 0, 0], [0, 0, -(FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR)], [0, 0, -1, 0]],
        dtype=torch.float64,
    )
    v = torch.tensor(verts, dtype=torch.float64)
    vh = torch.cat([v - torch.tensor([0.0, 0.0, DIST], dtype=torch.float64), torch.ones(len(v), 1, dtype=v.dtype)], 1)
    return (vh @ proj.T).float()[None].contiguous()


def _drtk():
    path = os.environ.get("DRTK_PATH")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import drtk

        return drtk
    except Exception as e:  # noqa: BLE001 - no DRTK column when it does not import
        print(f"note: no DRTK column ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def _timed(fns: dict, reps: int) -> dict:
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _scene(subdiv: int):
    import torch

    from lumigrad.geometry import icosphere

    verts, faces = icosphere(subdiv)
    light = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, 1.0]), dim=0)
    return verts.float(), faces.int(), light


@functools.lru_cache(maxsize=None)
def _camera(res: int):
    """The view, built once per resolution as a fitting loop would (Camera.look_at validates its
    inputs: about 0.85 ms, more than DRTK's step spends on its hand-written projection)."""
    import torch

    from lumigrad.scene.camera import Camera

    return Camera.look_at(torch.tensor([0.0, 0.0, DIST]), torch.zeros(3), width=res, height=res, fov_y_deg=FOV_Y_DEG)


@functools.lru_cache(maxsize=None)
def _lambert_setup(light_key: tuple):
    import torch

    from lumigrad.scene.lights import DirectionalLight
    from lumigrad.scene.materials import LambertMaterial

    return LambertMaterial(torch.full((3,), ALBEDO)), DirectionalLight(torch.tensor(light_key), intensity=math.pi)


def lambert(normals, mask, light, how: str = "lumigrad"):
    """``0.7 max(n.l, 0) mask`` as ``[B, H, W, 1]``: with lumigrad's ``shade()`` or in torch (DRTK's step)."""
    import torch

    if how == "torch":
        return ALBEDO * (torch.nn.functional.normalize(normals, dim=-1) @ light).clamp(min=0)[..., None] * mask
    from lumigrad.shade import shade

    material, sun = _lambert_setup(tuple(light.tolist()))
    return shade(material, sun, normals=normals, mask=mask)[..., :1]


def lumigrad_step(verts, faces, light, res: int, visibility: str, topology=None, workspace=None, shading="lumigrad"):
    """One W2 step with lumigrad ops; returns d loss / d scale.

    ``topology`` (``prepare_topology``) and ``workspace`` (``RasterizeWorkspace``)
    are what a fitting loop builds once per mesh and reuses, as the bench does.
    """
    import torch

    from lumigrad.geometry.normals import vertex_normals
    from lumigrad.ops import antialias, edge_grad, edge_rim, interpolate, rasterize

    cam = _camera(res)
    scale = torch.ones((), requires_grad=True)
    v = verts * scale
    pos = cam.project(v)
    # rast_db only where edge_rim needs it (its screen-space Jacobian); DRTK computes none.
    rast, rast_db = rasterize(pos, faces, (res, res), grad_db=visibility == "edge+rim", workspace=workspace)
    rim = edge_rim(rast, rast_db, pos, faces) if visibility == "edge+rim" else None
    normals = interpolate(vertex_normals(v, faces)[None], rast if rim is None else rim.rast, faces).out
    mask = (rast[..., 3:] > 0).float()
    shade = lambert(normals, mask, light, shading)
    if visibility in ("edge", "edge+rim"):
        shade = edge_grad(shade, rast, pos, faces, topology=topology, rim=rim)
    else:
        shade = antialias(shade, rast, pos, faces, topology=topology)
    ((shade - 0.25) ** 2).mean().backward()
    return float(scale.grad)


def shading_step(normals, mask, light, how: str = "torch"):
    """The shading part of a step on saved inputs: shading, MSE, backward to the normals."""
    n = normals.detach().requires_grad_(True)
    shade = lambert(n, mask, light, how)
    ((shade - 0.25) ** 2).mean().backward()
    return float(n.grad.abs().sum())


def _shading_inputs(verts, faces, res: int):
    import torch

    from lumigrad.geometry.normals import vertex_normals
    from lumigrad.ops import interpolate, rasterize
    from lumigrad.scene.camera import Camera

    cam = Camera.look_at(torch.tensor([0.0, 0.0, DIST]), torch.zeros(3), width=res, height=res, fov_y_deg=FOV_Y_DEG)
    with torch.no_grad():
        rast, _ = rasterize(cam.project(verts), faces, (res, res))
        normals = interpolate(vertex_normals(verts, faces)[None], rast, faces).out
    return normals, (rast[..., 3:] > 0).float()


def drtk_step(drtk, verts, faces, light, res: int):
    """The same step with DRTK (pixel space: x right, y down, pixel centres at integers, z = depth)."""
    import torch

    from lumigrad.geometry.normals import vertex_normals

    f = (res / 2) / math.tan(math.radians(FOV_Y_DEG) / 2)
    scale = torch.ones((), requires_grad=True)
    v = verts * scale
    depth = DIST - v[:, 2]
    v_pix = torch.stack([f * v[:, 0] / depth + res / 2 - 0.5, -f * v[:, 1] / depth + res / 2 - 0.5, depth], -1)[None]
    vi = faces
    index_img = drtk.rasterize(v_pix, vi, res, res)
    _, bary = drtk.render(v_pix, vi, index_img)
    normals = drtk.interpolate(vertex_normals(v, faces)[None], vi, index_img, bary)  # [1, 3, H, W]
    mask = (index_img != -1)[:, None].float()
    shade = ALBEDO * (torch.nn.functional.normalize(normals, dim=1) * light[None, :, None, None]).sum(1, keepdim=True).clamp(min=0) * mask
    shade = drtk.edge_grad_estimator(v_pix, vi, bary, shade, index_img)
    ((shade - 0.25) ** 2).mean().backward()
    return float(scale.grad)


def run(reps: int = 7, quick: bool = False) -> list[dict]:
    drtk = _drtk()
    rows = []
    for subdiv, res in CASES[:2] if quick else CASES:
        from lumigrad.ops import prepare_topology
        from lumigrad.ops.rasterize import RasterizeWorkspace

        verts, faces, light = _scene(subdiv)
        topo, ws = prepare_topology(faces, verts.shape[0]), RasterizeWorkspace()
        normals, mask = _shading_inputs(verts, faces, res)
        fns = {
            "shading": lambda: shading_step(normals, mask, light),
            "lg shading": lambda: shading_step(normals, mask, light, "lumigrad"),
            "edge": lambda: lumigrad_step(verts, faces, light, res, "edge", topo, ws),
            "edge+rim": lambda: lumigrad_step(verts, faces, light, res, "edge+rim", topo, ws),
            "edge+rim, torch shading": lambda: lumigrad_step(verts, faces, light, res, "edge+rim", topo, ws, "torch"),
            "antialias": lambda: lumigrad_step(verts, faces, light, res, "antialias", topo, ws),
        }
        if drtk is not None:
            fns["drtk"] = lambda: drtk_step(drtk, verts, faces, light, res)
        row = {"case": f"icosphere-{subdiv}", "F": int(faces.shape[0]), "res": f"{res}^2"}
        row.update({f"d/ds {k}": fn() for k, fn in fns.items() if "shading" not in k or k.startswith("edge")})
        row.update(_timed(fns, reps))
        if "drtk" in row:
            row["edge/drtk"] = row["edge"] / row["drtk"]
            row["edge+rim/drtk"] = row["edge+rim"] / row["drtk"]
        rows.append(row)
        print(row, flush=True)
    return rows


COLUMNS = ["case", "F", "res", "shading", "lg shading", "edge", "edge+rim", "edge+rim, torch shading", "antialias", "drtk",
           "edge/drtk", "edge+rim/drtk", "d/ds edge", "d/ds edge+rim", "d/ds edge+rim, torch shading", "d/ds antialias",
           "d/ds drtk"]


def table(rows: list[dict]) -> str:
    def fmt(v):
        return (f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}") if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="skip the 1.3M-triangle case")
    a = p.parse_args()
    os.environ["LUMIGRAD_NUM_THREADS"] = str(a.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as after `import lumigrad` (docs/threads.md)
    import torch

    torch.set_num_threads(a.threads)
    print(table(run(a.reps, a.quick)))
