"""Rasterizer benchmark: lumigrad vs the pure-torch reference vs Mitsuba 3 (primary visibility).

Cases: icospheres of 5k / 82k / 1.3M triangles at 512^2 and 1024^2, seen by one
camera. Columns (medians over --reps runs after warm-up, in ms):

* ``fwd``: ``rasterize(pos, tri, res)`` (defaults, so with ``rast_db``).
* ``fwd+ws``: the same with a caller-held ``RasterizeWorkspace`` (buffers reused,
  faces validated once), as a render loop would call it.
* ``ws no db``: the same without ``rast_db`` (``grad_db=False``: what silhouettes and
  untextured shading need); DRTK's ``rasterize`` returns only the triangle-index image.
* ``fwd+bwd``: rasterize -> interpolate(vertex colours) -> antialias -> MSE, then
  ``backward()`` to the clip positions and colours (only when the interpolate and
  antialias ops import).
* ``mitsuba``: Mitsuba 3 ``llvm_ad_rgb``, ``aov`` integrator (``dd.y:depth``),
  1 spp, same camera, resolution and mesh; runs alternate with ``fwd``.
* ``ref``: ``rasterize_ref``, brute force O(pixels x faces): only in the extra
  row on the 5k mesh at reduced resolution, next to ``fwd`` at that size.

W2 (visibility gradients, lumigrad vs DRTK) comes from bench/raster_w2.py.

Usage: ``python bench/raster.py [--quick] [--threads 2] [--reps 7] [--out table.md]``.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import re
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for lumigrad, torch and Mitsuba (default 2)")
    p.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: --threads)")
    p.add_argument("--reps", type=int, default=7, help="timed runs per measurement (median reported)")
    p.add_argument("--quick", action="store_true", help="skip the 1.3M-triangle mesh")
    p.add_argument("--no-mitsuba", action="store_true", help="do not run Mitsuba even if it imports")
    p.add_argument("--no-w2", action="store_true", help="skip the W2 (visibility fwd+bwd) table")
    p.add_argument("--out", help="also write the table as markdown to this file")
    return p.parse_args()


def _find_libllvm() -> str | None:
    """Newest libLLVM shared library on the system, for Dr.Jit's LLVM backend."""
    pats = ["/usr/lib/llvm-*/lib/libLLVM*.so*", "/usr/lib/x86_64-linux-gnu/libLLVM*.so*", "/usr/lib64/libLLVM*.so*"]
    found = sorted({f for p in pats for f in glob.glob(p)})

    def version(path):
        m = re.search(r"libLLVM(?:-|\.so\.)(\d+)", os.path.basename(path))
        return int(m.group(1)) if m else 0

    found = [f for f in found if version(f) >= 11]
    return max(found, key=version) if found else None


ARGS = _parse()
# Thread counts must be set before the pools start.
os.environ["LUMIGRAD_NUM_THREADS"] = str(ARGS.threads)
# Idle OpenMP workers (torch's, DRTK's) sleep instead of spinning, as after `import lumigrad` (docs/threads.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "DRJIT_LIBLLVM_PATH" not in os.environ and (_llvm := _find_libllvm()):
    os.environ["DRJIT_LIBLLVM_PATH"] = _llvm

import numpy as np  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402

torch.set_num_threads(ARGS.torch_threads or ARGS.threads)

from lumigrad.ops._rasterize_ref import rasterize_ref  # noqa: E402
from lumigrad.ops.rasterize import RasterizeWorkspace, rasterize  # noqa: E402

try:
    from lumigrad.ops.interpolate import interpolate
    from lumigrad.ops.antialias import antialias, prepare_topology
except ImportError as e:  # other ops may not exist yet
    interpolate = antialias = prepare_topology = None
    print(f"note: no fwd+bwd column ({e})", file=sys.stderr)

FOV_Y_DEG, DIST, NEAR, FAR = 45.0, 3.0, 0.1, 10.0
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import raster_w2  # noqa: E402
from raster_w2 import clip_positions  # noqa: E402

DRTK = raster_w2._drtk()


def _mitsuba():
    if ARGS.no_mitsuba:
        return None, None
    try:
        import drjit as dr
        import mitsuba as mi

        mi.set_variant("llvm_ad_rgb")
        dr.set_thread_count(ARGS.threads)
        return mi, dr
    except Exception as e:  # noqa: BLE001 - any import/variant failure means no Mitsuba column
        print(f"note: no Mitsuba column ({type(e).__name__}: {e})", file=sys.stderr)
        return None, None


def mitsuba_scene(mi, verts: np.ndarray, faces: np.ndarray, res: int):
    mesh = mi.Mesh("sphere", len(verts), len(faces))
    params = mi.traverse(mesh)
    params["vertex_positions"] = np.ascontiguousarray(verts, dtype=np.float32).ravel()
    params["faces"] = np.ascontiguousarray(faces, dtype=np.uint32).ravel()
    params.update()
    return mi.load_dict(
        {
            "type": "scene",
            "integrator": {"type": "aov", "aovs": "dd.y:depth"},
            "sensor": {
                "type": "perspective",
                "fov": FOV_Y_DEG,
                "fov_axis": "y",
                "near_clip": NEAR,
                "far_clip": FAR,
                "to_world": mi.ScalarTransform4f().look_at(origin=[0, 0, DIST], target=[0, 0, 0], up=[0, 1, 0]),
                "film": {"type": "hdrfilm", "width": res, "height": res, "rfilter": {"type": "box"}},
                "sampler": {"type": "independent", "sample_count": 1},
            },
            "mesh": mesh,
        }
    )


def timed(fns: dict, reps: int) -> dict:
    """Median ms of each callable over two blocks of about reps/2 runs per callable.

    Blocks rather than strict alternation: worker threads (ours, Dr.Jit's) slow
    down whatever runs right after them; two blocks still spread load changes.
    """
    for f in fns.values():
        f()
        f()
    times = {k: [] for k in fns}
    for block in range(2):
        for k, f in fns.items():
            for _ in range((reps + 1 - block) // 2 if reps > 1 else 1):
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def bench_case(subdiv: int, res: int, mi, dr) -> dict:
    m = trimesh.creation.icosphere(subdivisions=subdiv)
    verts, faces = np.asarray(m.vertices), np.asarray(m.faces)
    pos = clip_positions(verts)
    tri = torch.tensor(faces, dtype=torch.int32)
    ws = RasterizeWorkspace()
    ws2 = RasterizeWorkspace()
    fns = {"fwd": lambda: rasterize(pos, tri, (res, res)), "fwd+ws": lambda: rasterize(pos, tri, (res, res), workspace=ws),
           "ws no db": lambda: rasterize(pos, tri, (res, res), grad_db=False, workspace=ws2)}
    if interpolate is not None:
        col = torch.tensor(np.abs(verts), dtype=torch.float32)
        topo = prepare_topology(tri, len(verts))
        target = torch.zeros(1, res, res, 3)

        def fwd_bwd():
            p = pos.detach().requires_grad_(True)
            c = col.detach().requires_grad_(True)
            rast, _ = rasterize(p, tri, (res, res))
            img = interpolate(c, rast, tri).out
            img = antialias(img, rast, p, tri, topology=topo)
            ((img - target) ** 2).mean().backward()

        fns["fwd+bwd"] = fwd_bwd
    if mi is not None:
        scene = mitsuba_scene(mi, verts, faces, res)
        fns["mitsuba"] = lambda: np.asarray(mi.render(scene, spp=1))
    if DRTK is not None:
        v_pix = drtk_pixels(verts, res)
        fns["drtk"] = lambda: DRTK.rasterize(v_pix, tri, res, res)
    row = {"case": f"icosphere-{subdiv}", "F": len(faces), "res": f"{res}^2"}
    row.update(timed(fns, ARGS.reps))
    if "mitsuba" in row:
        row["fwd/mitsuba"] = row["fwd"] / row["mitsuba"]
        row["ws/mitsuba"] = row["fwd+ws"] / row["mitsuba"]
    peers = [row[k] for k in ("mitsuba", "drtk") if k in row]
    if peers:
        row["ws/best peer"] = row["fwd+ws"] / min(peers)
        row["no db/best peer"] = row["ws no db"] / min(peers)
    return row


def drtk_pixels(verts: np.ndarray, res: int) -> torch.Tensor:
    """DRTK's pixel space for the same camera: x right, y down, pixel centres at integers, z = depth."""
    f = (res / 2) / math.tan(math.radians(FOV_Y_DEG) / 2)
    v = torch.tensor(verts, dtype=torch.float32)
    depth = DIST - v[:, 2]
    return torch.stack([f * v[:, 0] / depth + res / 2 - 0.5, -f * v[:, 1] / depth + res / 2 - 0.5, depth], -1)[None].contiguous()


def bench_reference(res: int) -> dict:
    """Reference vs kernel on the 5k mesh at a resolution the brute force can hold."""
    m = trimesh.creation.icosphere(subdivisions=4)
    pos, tri = clip_positions(np.asarray(m.vertices)), torch.tensor(np.asarray(m.faces), dtype=torch.int32)
    row = {"case": "icosphere-4 (ref size)", "F": len(tri), "res": f"{res}^2"}
    row.update(timed({"fwd": lambda: rasterize(pos, tri, (res, res)), "ref": lambda: rasterize_ref(pos, tri, (res, res))}, max(3, ARGS.reps // 2)))
    row["fwd/ref"] = row["fwd"] / row["ref"]
    return row


# W1 (rasterize) columns; further sections (e.g. W2) add their own column lists and row builders.
COLUMNS = ["case", "F", "res", "fwd", "fwd+ws", "ws no db", "fwd+bwd", "mitsuba", "drtk", "fwd/mitsuba", "ws/mitsuba",
           "ws/best peer", "no db/best peer", "ref", "fwd/ref"]


def table(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}" if v < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    mi, dr = _mitsuba()
    subdivs = [4, 6] if ARGS.quick else [4, 6, 8]
    rows = []
    for subdiv in subdivs:
        for res in (512, 1024):
            rows.append(bench_case(subdiv, res, mi, dr))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows.append(bench_reference(64))
    header = (
        f"rasterize benchmark: {ARGS.threads} threads ({ARGS.torch_threads or ARGS.threads} torch intra-op), "
        f"median of {ARGS.reps} runs, times in ms; "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs"
        + (f", Mitsuba {mi.__version__} ({mi.variant()})" if mi is not None else ", no Mitsuba")
    )
    text = header + "\n\nW1 (rasterize alone)\n\n" + table(rows) + "\n"
    if not ARGS.no_w2:
        w2 = raster_w2.run(ARGS.reps, ARGS.quick)
        text += "\nW2 (rasterize -> normals -> Lambert -> visibility -> MSE -> backward)\n\n" + raster_w2.table(w2) + "\n"
    print("\n" + text)
    if ARGS.out:
        from lumigrad._runtime.files import write_text_atomic

        write_text_atomic(ARGS.out, text)


if __name__ == "__main__":
    main()
