"""Per-stage profile of the W2 step (``raster_w2.lumigrad_step``, ``edge+rim``), optionally A/B against another tree.

The step is the one of ``bench/raster_w2.py`` (project -> rasterize with a reused workspace ->
edge_rim -> vertex_normals -> interpolate -> torch Lambert shading -> edge_grad -> MSE -> backward),
copied here so that this profile does not move when that file does. Forward stages are timed
around their calls; the backward is split by stage with hooks on every autograd node, each node
charged to the forward stage that created it (the nodes reached from a stage's outputs that no
earlier stage reached). ``glue`` is the rest of the step (the scalar multiply, hooks, Python);
``STEP less shading`` is what the ops outside the shading cost, the part this profile is for.
Wall times (``time.perf_counter``), median over ``--reps`` steps, in ms; with ``--threads 1`` the
calling thread's CPU time (``time.thread_time``: every launch then runs on it), which other jobs
on a shared machine disturb far less.

With ``--base TREE`` that tree's ``lumigrad`` is loaded too (as ``lumigrad_base``, like
``raster_ab.py``) and the two steps alternate (A B, B A, ...) in one process, so the columns
compare under the same machine load.

Usage: ``PYTHONPATH=$PWD python bench/w2_profile.py [--base /work/main] [--threads 2] [--reps 15]
[--cases 4:256 6:512 8:512]``.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import os
import statistics
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--base", default=None, help="source tree holding the baseline lumigrad/ package")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=15)
p.add_argument("--cases", nargs="*", default=["4:256", "6:512", "8:512"], help="level:res pairs")
p.add_argument("--torch-profile", action="store_true", help="also print torch.profiler's top ops (new tree)")
ARGS = p.parse_args()
os.environ["LUMIGRAD_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)
CLOCK = time.thread_time if ARGS.threads == 1 else time.perf_counter
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _base_tree import copy_base  # noqa: E402

FOV_Y_DEG, DIST = 45.0, 3.0  # raster_w2.py's camera
STAGES = ["project", "rasterize", "edge_rim", "vertex_normals", "interpolate", "shading", "edge_grad", "loss"]


class Tree:
    """One source tree's ops, scene objects and reusable state for a case."""

    def __init__(self, pkg: str, verts, faces, res: int):
        ops = importlib.import_module(f"{pkg}.ops")
        self.rasterize, self.edge_rim, self.edge_grad, self.interpolate = ops.rasterize, ops.edge_rim, ops.edge_grad, ops.interpolate
        self.vertex_normals = importlib.import_module(f"{pkg}.geometry.normals").vertex_normals
        cam_mod = importlib.import_module(f"{pkg}.scene.camera")
        self.cam = cam_mod.Camera.look_at(torch.tensor([0.0, 0.0, DIST]), torch.zeros(3), width=res, height=res,
                                          fov_y_deg=FOV_Y_DEG)
        self.topo = ops.prepare_topology(faces, verts.shape[0])
        self.ws = importlib.import_module(f"{pkg}.ops.rasterize").RasterizeWorkspace()
        self.verts, self.faces, self.res = verts, faces, res
        self.light = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, 1.0]), dim=0)

    def step(self, times: dict | None):
        """One W2 step; per-stage wall ms added to ``times`` (when given); returns d loss / d scale."""
        clock = CLOCK
        stage_of: dict = {}
        seen: set = set()
        res, faces = self.res, self.faces
        t_step = clock()
        marks = []

        def mark(name, *outs):
            marks.append((name, clock()))
            if times is not None:
                _claim(name, outs, stage_of, seen)

        scale = torch.ones((), requires_grad=True)
        v = self.verts * scale
        _claim("glue", (v,), stage_of, seen)
        marks.append(("start", clock()))
        pos = self.cam.project(v)
        mark("project", pos)
        rast, rast_db = self.rasterize(pos, faces, (res, res), grad_db=True, workspace=self.ws)
        mark("rasterize", rast, rast_db)
        rim = self.edge_rim(rast, rast_db, pos, faces)
        mark("edge_rim", rim.rast)
        vn = self.vertex_normals(v, faces)
        mark("vertex_normals", vn)
        normals = self.interpolate(vn[None], rim.rast, faces).out
        mark("interpolate", normals)
        mask = (rast[..., 3:] > 0).float()
        shade = 0.7 * (torch.nn.functional.normalize(normals, dim=-1) @ self.light).clamp(min=0)[..., None] * mask
        mark("shading", shade)
        shade = self.edge_grad(shade, rast, pos, faces, topology=self.topo, rim=rim)
        mark("edge_grad", shade)
        loss = ((shade - 0.25) ** 2).mean()
        mark("loss", loss)
        bwd = collections.defaultdict(float)
        handles = _hook_all(loss.grad_fn, stage_of, bwd, clock) if times is not None else []
        t_b = clock()
        loss.backward()
        t_end = clock()
        for h in handles:
            h.remove()
        if times is not None:
            for (_, t0), (name, t1) in zip(marks, marks[1:]):
                times[f"{name} fwd"].append(1e3 * (t1 - t0))
            for name in STAGES:
                times[f"{name} bwd"].append(1e3 * bwd.get(name, 0.0))
            times["backward (all)"].append(1e3 * (t_end - t_b))
            times["STEP"].append(1e3 * (t_end - t_step))
            times["STEP less shading"].append(times["STEP"][-1] - times["shading fwd"][-1] - times["shading bwd"][-1])
        return float(scale.grad)


def _claim(name, outs, stage_of, seen):
    stack = [o.grad_fn for o in outs if isinstance(o, torch.Tensor) and o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stage_of[node] = name
        stack.extend(n for n, _ in node.next_functions)


def _hook_all(root, stage_of, acc, clock):
    handles, start = [], {}

    def pre(node):
        def f(*_):
            start[node] = clock()
        return f

    def post(node):
        def f(*_):
            acc[stage_of.get(node, "glue")] += clock() - start.pop(node, clock())
        return f

    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        handles.append(node.register_prehook(pre(node)))
        handles.append(node.register_hook(post(node)))
        stack.extend(n for n, _ in node.next_functions)
    return handles


def _scene(level: int):
    from lumigrad.geometry import icosphere

    verts, faces = icosphere(level)
    return verts.float(), faces.int()


def main() -> None:
    pkgs = ["lumigrad"]
    if ARGS.base:
        sys.path.insert(0, copy_base(ARGS.base, "lumigrad_w2_"))
        pkgs = ["lumigrad_base", "lumigrad"]
    what = "thread CPU ms, 1 thread" if ARGS.threads == 1 else f"wall ms, {ARGS.threads} threads"
    print(f"W2 step (edge+rim) per stage, {what}, median of {ARGS.reps}"
          + (" alternating steps" if ARGS.base else " steps") + f"; load {os.getloadavg()[0]:.2f}\n")
    head = "| case | stage | " + " | ".join("base" if p_ == "lumigrad_base" else "new" for p_ in pkgs)
    print(head + (" | new/base |" if ARGS.base else " |"))
    print("|" + "---|" * (len(pkgs) + 2 + bool(ARGS.base)))
    for case in ARGS.cases:
        level, res = map(int, case.split(":"))
        verts, faces = _scene(level)
        trees = {pk: Tree(pk, verts, faces, res) for pk in pkgs}
        grads = {pk: [t.step(None) for _ in range(2)][-1] for pk, t in trees.items()}
        times = {pk: collections.defaultdict(list) for pk in pkgs}
        for r in range(ARGS.reps):
            for pk in pkgs if r % 2 == 0 else pkgs[::-1]:
                trees[pk].step(times[pk])
        keys = ["STEP", "STEP less shading", "backward (all)"] + [f"{s} {d}" for s in STAGES for d in ("fwd", "bwd")]
        for k in keys:
            med = [statistics.median(times[pk][k]) for pk in pkgs]
            if max(med) < 0.005:
                continue
            ratio = f" | {med[1] / med[0]:.3f}" if ARGS.base and med[0] > 0 else (" | " if ARGS.base else "")
            print(f"| {faces.shape[0]} / {res}^2 | {k} | " + " | ".join(f"{m:.2f}" for m in med) + ratio + " |")
        print("| | d loss/d s | " + " | ".join(f"{grads[pk]:.6g}" for pk in pkgs) + (" | |" if ARGS.base else " |"),
              flush=True)
        if ARGS.torch_profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    trees["lumigrad"].step(None)
            print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=40))


if __name__ == "__main__":
    main()
