"""Thread safety: every op called from 8 Python threads at once, first call included.

Each case runs tests/robustness/_stress_worker.py in a fresh process so that the
threads make the process's first calls (module build/load races are what crashed:
issue 13). "warm" uses the normal Warp kernel cache; "cold" an empty one in
tmp_path, so the threads also race to compile.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_stress_worker.py")


def _run_worker(env_extra: dict, threads: int = 8, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env_extra}
    return subprocess.run(
        [sys.executable, str(WORKER), str(threads)], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_threads_first_call_warm_cache():
    proc = _run_worker({})
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip().endswith("ok")


def test_threads_first_call_cold_cache(tmp_path):
    cache = tmp_path / "warp-cache"
    # Compiling every module takes ~45 s of CPU; the long timeout is for a loaded shared machine.
    proc = _run_worker({"WARP_CACHE_PATH": str(cache)})
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip().endswith("ok")
    # The kernels really were compiled into the empty cache (not loaded from the shared one).
    assert any(p.suffix == ".o" for p in cache.rglob("*")), sorted(p.name for p in cache.rglob("*"))[:20]


def test_two_threads_first_rasterize_warm():
    """The smallest case from the issue: two threads' first rasterize (segfaulted 5/5)."""
    code = (
        "import threading, torch\n"
        "from lumigrad import rasterize\n"
        "from lumigrad.geometry.primitives import icosphere\n"
        "v, f = icosphere(2)\n"
        "pos = torch.cat([v * 0.5, torch.ones(v.shape[0], 1)], 1)\n"
        "out = {}\n"
        "b = threading.Barrier(2)\n"
        "def run(i):\n"
        "    b.wait(); out[i] = rasterize(pos, f, (64, 64)).rast\n"
        "ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "assert torch.equal(out[0], out[1]) and int((out[0][..., 3] > 0).sum()) > 100\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("order, policy, expect_warning, expect_policy", [
    ("import torch, lumigrad", None, True, None),  # too late to set it: say so
    ("import torch, lumigrad", "ACTIVE", False, "ACTIVE"),  # the user's choice, kept and silent
    ("import lumigrad, torch", None, False, "PASSIVE"),  # set before OpenMP reads it
])
def test_omp_wait_policy_default_and_warning(order, policy, expect_warning, expect_policy):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env["OMP_NUM_THREADS"] = "2"  # torch's pool has a second thread (which could spin) on any machine
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    code = f"{order}; import os; torch.set_num_threads(2); print(os.environ.get('OMP_WAIT_POLICY'))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("lumigrad was imported after torch" in proc.stderr) == expect_warning, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(expect_policy)
