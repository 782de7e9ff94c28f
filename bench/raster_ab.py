"""A/B of :func:`lumigrad.ops.rasterize` between two source trees, in one process, per kernel.

The baseline tree's ``lumigrad`` package is copied to a temporary directory as ``lumigrad_base``
(imports rewritten), so both versions load side by side; their calls alternate (A B, B A, ...)
and the medians of the calling thread's CPU time (``time.thread_time``, one thread) are printed
per call and per kernel launch. On a machine other jobs share, this is what separates a few
percent from the noise: wall times of separate runs drift by 10-20 % there.

Usage (from the tree to test, the "new" side)::

    PYTHONPATH=$PWD python bench/raster_ab.py --base /work/main --cases 6:1024 8:512 8:1024 [--ids] [--bwd]

``--ids`` times ``_rasterize_ids`` (the tracer's visibility pass), ``--bwd`` rasterize + backward.
Cases are ``level:res`` (icosphere subdivision level, square resolution), the scene of ``raster.py``.
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
p.add_argument("--base", required=True, help="source tree holding the baseline lumigrad/ package")
p.add_argument("--cases", nargs="*", default=["6:1024", "8:512", "8:1024"], help="level:res pairs")
p.add_argument("--reps", type=int, default=9)
p.add_argument("--ids", action="store_true", help="time _rasterize_ids instead of rasterize")
p.add_argument("--bwd", action="store_true", help="time rasterize + backward")
p.add_argument("--no-db", action="store_true", help="grad_db=False")
ARGS = p.parse_args()
os.environ["LUMIGRAD_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _base_tree import copy_base  # noqa: E402
from raster_w2 import clip_positions  # noqa: E402
import trimesh  # noqa: E402

torch.set_num_threads(1)


def _timed_launches(mod, acc: dict) -> None:
    """Wrap the module's launch helpers so that each launch's thread time lands in ``acc[kernel name]``."""
    for name in ("launch", "launch_chunks"):
        fn = getattr(mod, name)

        def wrapper(*a, fn=fn, **k):
            kern = a[0][0][0] if isinstance(a[0], list) else a[0]
            key = getattr(kern, "key", "?").split(".")[-1]
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.thread_time() - t

        setattr(mod, name, wrapper)


def _call(mod, pos, tri, res):
    ws = mod.RasterizeWorkspace()
    if ARGS.ids:
        return lambda: mod._rasterize_ids(pos, tri, (res, res), workspace=ws)
    if not ARGS.bwd:
        return lambda: mod.rasterize(pos, tri, (res, res), grad_db=not ARGS.no_db, workspace=ws)
    leaf = pos.clone().requires_grad_(True)

    def run():
        rast, db = mod.rasterize(leaf, tri, (res, res), grad_db=not ARGS.no_db, workspace=ws)
        (rast[..., :3].sum() + db.sum()).backward()

    return run


def main() -> None:
    sys.path.insert(0, copy_base(ARGS.base, "lumigrad_ab_"))
    mods = {
        "base": importlib.import_module("lumigrad_base.ops.rasterize"),
        "new": importlib.import_module("lumigrad.ops.rasterize"),
    }
    acc = {tag: collections.defaultdict(float) for tag in mods}
    for tag, mod in mods.items():
        _timed_launches(mod, acc[tag])
    what = "ids" if ARGS.ids else "fwd+bwd" if ARGS.bwd else "fwd"
    print(f"rasterize A/B ({what}, thread CPU ms, 1 thread, median of {ARGS.reps} alternating runs)\n")
    print("| case | stage | base | new | new/base |\n|---|---|---|---|---|")
    for case in ARGS.cases:
        level, res = map(int, case.split(":"))
        m = trimesh.creation.icosphere(subdivisions=level)
        pos = clip_positions(np.asarray(m.vertices))
        tri = torch.tensor(np.asarray(m.faces), dtype=torch.int32)
        fns = {tag: _call(mod, pos, tri, res) for tag, mod in mods.items()}
        for fn in fns.values():
            fn()
            fn()
        total = {tag: [] for tag in fns}
        stages = {tag: collections.defaultdict(list) for tag in fns}
        for r in range(ARGS.reps):
            for tag in ("base", "new") if r % 2 == 0 else ("new", "base"):
                acc[tag].clear()
                t = time.thread_time()
                fns[tag]()
                total[tag].append(time.thread_time() - t)
                for k, v in acc[tag].items():
                    stages[tag][k].append(v)
        rows = [("TOTAL", total["base"], total["new"])]
        rows += [(k, stages["base"].get(k, [0.0]), stages["new"].get(k, [0.0]))
                 for k in sorted(set(stages["base"]) | set(stages["new"]))]
        for name, b, n in rows:
            mb, mn = statistics.median(b) * 1e3, statistics.median(n) * 1e3
            ratio = f"{mn / mb:.3f}" if mb > 0 else ""
            print(f"| {tri.shape[0]} / {res}^2 | {name} | {mb:.2f} | {mn:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
