"""Neural-rendering benchmark: volume compositing and Gaussian splatting, kernel vs pure-torch reference.

Rows (medians over --reps runs after one warm-up; each case runs in its own
subprocess so that its peak RSS is its own):

* ``volume``: ``volume_render`` forward+backward (to sigmas and rgbs) over R
  rays x S samples (packed), in samples/s, next to ``volume_render_ref``.
* ``splat``: ``rasterize_gaussians`` forward+backward (to means2d, conics,
  colours, opacities) of 100k random screen-space Gaussians at 512^2, in ms.
  The dense reference needs ``[H*W, N]`` tensors (~100 GB at that size), so
  the 512^2 row compares with a per-tile pure-torch rasterizer (same binning,
  dense blend per 16x16 tile by autograd), and the dense reference runs in an
  extra row at a reduced size, next to the kernel at that size.

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
    "splat_tiled_ref": ("splat", "tiled_ref", (100_000, 512)),
    "splat_kernel_small": ("splat", "kernel", (2000, 128)),
    "splat_ref_small": ("splat", "ref", (2000, 128)),
}


def _tiled_ref(m, q, c, o, d, W, tile=16):
    """Pure-torch rasterizer per 16x16 tile (the dense reference's math on each tile's own Gaussians).

    Uses the kernel's binning (tile lists in depth order, the same culling), then
    per tile a dense ``[256, n_tile]`` blend by autograd; forward and backward of
    ``image.sum() + alpha.sum()`` run tile by tile (the loss is a sum over
    tiles), so memory stays at one tile's graph. This is the fair pure-torch
    peer at sizes where the dense ``[H*W, N]`` reference cannot run.
    """
    import torch

    from lumigrad.ops.splat import _bin, gaussian_radii

    feats = torch.cat([m.detach(), q.detach(), o.detach()[:, None], gaussian_radii(q, o)[:, None]], 1).contiguous()
    ids, offsets, tx, ty = _bin(feats, d, W, W, tile)
    ids, offsets = ids.long(), offsets.tolist()
    for t in range(tx * ty):
        a, b = offsets[t], offsets[t + 1]
        if a == b:
            continue
        g = ids[a:b]
        y0, x0 = (t // tx) * tile, (t % tx) * tile
        ys, xs = torch.meshgrid(torch.arange(y0, min(y0 + tile, W)) + 0.5, torch.arange(x0, min(x0 + tile, W)) + 0.5,
                                indexing="ij")
        mg, qg = m[g], q[g]
        dx = xs.reshape(-1, 1) - mg[None, :, 0]
        dy = ys.reshape(-1, 1) - mg[None, :, 1]
        power = -0.5 * (qg[:, 0] * dx * dx + qg[:, 2] * dy * dy) - qg[:, 1] * dx * dy
        alpha = torch.clamp(o[g] * torch.exp(power), max=0.99)
        alpha = torch.where((power <= 0) & (alpha >= 1.0 / 255.0), alpha, torch.zeros(()))
        alpha = torch.where(torch.cumprod(1.0 - alpha.detach(), 1) >= 1e-4, alpha, torch.zeros(()))
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], 1), 1)
        w = alpha * trans
        ((w @ c[g]).sum() + w.sum()).backward()


def _time(fn, reps, warmup=True):
    if warmup:
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
            if impl == "tiled_ref":
                _tiled_ref(m, q, c, o, d, W)
                return
            out = fn(m, q, c, o, d, W, W)
            (out.image.sum() + out.alpha.sum()).backward()

        # the per-tile torch loop takes minutes at 512^2: one untimed-warm-up-free run
        sec = _time(step, 1, warmup=False) if impl == "tiled_ref" else _time(step, ARGS.reps)
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
    st = results["splat_tiled_ref"]
    lines = [
        f"threads={ARGS.threads}, reps={ARGS.reps} (median), peak RSS above the process baseline",
        "",
        "| case | lumigrad (Warp) | pure-torch reference | ratio | peak MB (kernel / ref) |",
        "|---|---|---|---|---|",
        f"| volume fwd+bwd, 4096 rays x 128 samples | {vk['samples_per_s'] / 1e6:.2f} M samples/s ({vk['ms']:.0f} ms) | "
        f"{vr['samples_per_s'] / 1e6:.2f} M samples/s ({vr['ms']:.0f} ms) | {vr['ms'] / vk['ms']:.1f}x | "
        f"{vk['peak_rss_mb']:.0f} / {vr['peak_rss_mb']:.0f} |",
        f"| splat fwd+bwd, 100k Gaussians, 512^2 | {sk['ms']:.0f} ms | {st['ms']:.0f} ms (per-tile torch; the dense "
        f"[H*W, N] reference would need ~100 GB) | {st['ms'] / sk['ms']:.1f}x | "
        f"{sk['peak_rss_mb']:.0f} / {st['peak_rss_mb']:.0f} |",
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
