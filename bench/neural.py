"""Neural-rendering benchmark: volume compositing and Gaussian splatting, kernel vs pure-torch reference.

Rows (medians over --reps runs after one warm-up; each case runs in its own
subprocess so that its peak RSS is its own):

* ``volume``: ``volume_render`` forward+backward (to sigmas and rgbs) over R
  rays x S samples (packed), in samples/s, next to ``volume_render_ref``.
* ``splat``: ``rasterize_gaussians`` forward+backward (to means2d, conics,
  colours, opacities) of 100k random screen-space Gaussians at 512^2, in ms.
  The dense reference needs ``[H*W, N]`` tensors (~100 GB at that size), so
  it runs in an extra row at a reduced size, next to the kernel at that size.

Usage: ``python bench/neural.py [--threads 2] [--reps 3] [--out table.md]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for lumigrad and torch (default 2)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per case (median)")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--out", help="also write the markdown table here")
    return p.parse_args()


ARGS = _parse()
os.environ["LUMIGRAD_NUM_THREADS"] = str(ARGS.threads)

CASES = {
    # name: (kind, impl, size)
    "volume_kernel": ("volume", "kernel", (4096, 128)),
    "volume_ref": ("volume", "ref", (4096, 128)),
    "splat_kernel": ("splat", "kernel", (100_000, 512)),
    "splat_kernel_small": ("splat", "kernel", (2000, 128)),
    "splat_ref_small": ("splat", "ref", (2000, 128)),
}


def _time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _run_case(name: str) -> dict:
    import torch

    torch.set_num_threads(ARGS.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    kind, impl, size = CASES[name]
    g = torch.Generator().manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "volume":
        from lumigrad.ops._volume_render_ref import volume_render_ref
        from lumigrad.ops.volume_render import volume_render

        R, S = size
        n = R * S
        sig = (torch.rand(n, generator=g) * 5).requires_grad_()
        rgb = torch.rand(n, 3, generator=g).requires_grad_()
        ts = (torch.arange(S).float() * 0.01).repeat(R)
        packed = torch.stack([torch.arange(R) * S, torch.full((R,), S)], 1).int()
        fn = volume_render if impl == "kernel" else volume_render_ref

        def step():
            out = fn(sig, rgb, ts, ts + 0.01, packed)
            (out.colors.sum() + out.opacities.sum()).backward()

        sec = _time(step, ARGS.reps)
        res = {"ms": sec * 1e3, "samples_per_s": n / sec}
    else:
        from lumigrad.ops._splat_ref import rasterize_gaussians_ref
        from lumigrad.ops.splat import rasterize_gaussians

        N, W = size
        m = (torch.rand(N, 2, generator=g) * W).requires_grad_()
        sd = torch.rand(N, 2, generator=g) * 3 + 0.5  # pixel std devs 0.5..3.5
        q = torch.stack([1 / sd[:, 0] ** 2, torch.zeros(N), 1 / sd[:, 1] ** 2], 1).requires_grad_()
        c = torch.rand(N, 3, generator=g).requires_grad_()
        o = (torch.rand(N, generator=g) * 0.9 + 0.05).requires_grad_()
        d = torch.rand(N, generator=g)
        fn = rasterize_gaussians if impl == "kernel" else rasterize_gaussians_ref

        def step():
            out = fn(m, q, c, o, d, W, W)
            (out.image.sum() + out.alpha.sum()).backward()

        sec = _time(step, ARGS.reps)
        res = {"ms": sec * 1e3}
    res["peak_rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0
    return res


def main():
    if ARGS.case:
        print(json.dumps(_run_case(ARGS.case)))
        return
    results = {}
    for name in CASES:
        cmd = [sys.executable, __file__, "--case", name, "--threads", str(ARGS.threads), "--reps", str(ARGS.reps)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            results[name] = {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
        else:
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, results[name], file=sys.stderr, flush=True)
    vk, vr = results["volume_kernel"], results["volume_ref"]
    sk, sks, srs = results["splat_kernel"], results["splat_kernel_small"], results["splat_ref_small"]
    lines = [
        f"threads={ARGS.threads}, reps={ARGS.reps} (median), peak RSS above the process baseline",
        "",
        "| case | lumigrad (Warp) | pure-torch reference | ratio | peak MB (kernel / ref) |",
        "|---|---|---|---|---|",
        f"| volume fwd+bwd, 4096 rays x 128 samples | {vk['samples_per_s'] / 1e6:.2f} M samples/s ({vk['ms']:.0f} ms) | "
        f"{vr['samples_per_s'] / 1e6:.2f} M samples/s ({vr['ms']:.0f} ms) | {vr['ms'] / vk['ms']:.1f}x | "
        f"{vk['peak_rss_mb']:.0f} / {vr['peak_rss_mb']:.0f} |",
        f"| splat fwd+bwd, 100k Gaussians, 512^2 | {sk['ms']:.0f} ms | not run (dense [H*W, N] ~ 100 GB) | - | "
        f"{sk['peak_rss_mb']:.0f} / - |",
        f"| splat fwd+bwd, 2k Gaussians, 128^2 | {sks['ms']:.1f} ms | {srs['ms']:.1f} ms | {srs['ms'] / sks['ms']:.1f}x | "
        f"{sks['peak_rss_mb']:.0f} / {srs['peak_rss_mb']:.0f} |",
    ]
    table = "\n".join(lines)
    print(table)
    if ARGS.out:
        with open(ARGS.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
