"""The command line and process set-up shared by the Cornell-box path-tracing benchmarks (``trace_gi.py``,
``trace_gi_textures.py``, ``trace_sky.py``). Runs before torch is imported: the thread count and libgomp's wait
policy must be in the environment first (why: ``bench/raytrace.py``'s docstring)."""
from __future__ import annotations

import argparse
import os
import sys


def gi_args(description: str, threads: int = 2, reps: int = 2, add=None) -> argparse.Namespace:
    """``--res --spp --bounces --threads --reps`` (and what ``add(parser)`` adds) parsed; sets
    ``LUMIGRAD_NUM_THREADS`` and ``OMP_WAIT_POLICY=PASSIVE`` (unless ``--omp-active`` was added and given) and puts
    the repository and ``tests/validation`` (the Cornell box) on ``sys.path``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--bounces", type=int, default=3)
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--reps", type=int, default=reps)
    if add is not None:
        add(ap)
    args = ap.parse_args()
    os.environ.setdefault("LUMIGRAD_NUM_THREADS", str(args.threads))
    if not getattr(args, "omp_active", False):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(root, "tests", "validation"))
    return args
