"""Run every public op (and the fit loop's building blocks) from N threads at once, first call included.

Usage: ``python tests/robustness/_stress_worker.py N``; prints ``ok`` and exits 0 when
every thread finished and each thread's results equal a single-threaded rerun.
Runs in a fresh process so the calls are the process's first (tests/robustness/test_threads.py).
"""
import sys
import threading

import torch


def workload(seed: int) -> dict[str, torch.Tensor]:
    """Forward and backward through all ops on a small icosphere; returns the results."""
    from lumigrad import Camera, antialias, interpolate, rasterize, soft_rasterize, texture
    from lumigrad.geometry.primitives import icosphere
    from lumigrad.losses import laplacian_smoothing, mse
    from lumigrad.render import RasterSettings, render_silhouette

    g = torch.Generator().manual_seed(seed)
    verts, faces = icosphere(1)
    pos = torch.cat([verts * 0.6, torch.ones(verts.shape[0], 1)], 1)
    pos[:, 2] *= 0.5
    pos = (pos + 0.05 * torch.rand(pos.shape, generator=g)).requires_grad_(True)
    res = (24, 32)
    rast, rast_db = rasterize(pos, faces, res)
    col = torch.rand(verts.shape[0], 3, generator=g)
    color = interpolate(col, rast, faces)[0]
    uv, uv_da = interpolate(pos[:, :2] * 0.5 + 0.5, rast, faces, rast_db=rast_db, diff_attrs="all")
    tex = torch.rand(16, 16, 3, generator=g, requires_grad=True)
    tcol = texture(tex, uv, uv_da, filter_mode="linear-mipmap-linear")
    aa = antialias(color, rast, pos, faces)
    soft = soft_rasterize(pos, faces, res, col).color
    (aa.sum() + tcol.sum() + soft.sum()).backward()
    # One step of a silhouette fit: render, image + mesh losses, optimizer step.
    v = (verts * 0.8).clone().requires_grad_(True)
    cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=20, height=16)
    opt = torch.optim.Adam([v], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        sil_hard = render_silhouette(v, faces, cam)
        sil_soft = render_silhouette(v, faces, cam, RasterSettings(visibility="soft"))
        target = torch.zeros_like(sil_hard)
        loss = mse(sil_hard, target) + mse(sil_soft, target) + 0.1 * laplacian_smoothing(v, faces)
        loss.backward()
        opt.step()
    return {
        "rast": rast.detach(), "aa": aa.detach(), "tex": tcol.detach(), "soft": soft.detach(),
        "grad_pos": pos.grad, "grad_tex": tex.grad, "verts": v.detach(),
    }


def main(n: int) -> int:
    results: dict[int, dict] = {}
    errors: list[str] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()  # start together so the first calls overlap
            results[i] = workload(i)
        except BaseException as e:  # noqa: BLE001 - reported to the parent test
            import traceback

            errors.append(f"thread {i}: {traceback.format_exc()}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors))
        return 1
    for i in range(n):  # the threaded results must equal a sequential rerun
        ref = workload(i)
        for k, v in ref.items():
            if not torch.allclose(results[i][k], v, rtol=1e-5, atol=1e-6, equal_nan=False):
                print(f"thread {i}: {k} differs from the sequential result")
                return 1
            if not bool(torch.isfinite(v).all()):
                print(f"thread {i}: {k} is not finite")
                return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
