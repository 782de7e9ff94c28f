"""Wall time of lumigrad vertex_normals forward and forward+backward (CPU).

Usage: OMP_WAIT_POLICY=PASSIVE python bench/vertex_normals.py THREADS [LEVELS...]
Median of alternating repeats; prints ms.
"""
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
os.environ["LUMIGRAD_NUM_THREADS"] = str(threads)
import torch  # noqa: E402

torch.set_num_threads(threads)
from lumigrad.geometry import icosphere  # noqa: E402
from lumigrad.geometry.normals import vertex_normals  # noqa: E402


def med(xs):
    return sorted(xs)[len(xs) // 2]


def main():
    levels = [int(a) for a in sys.argv[2:]] or [6, 8]
    for lvl in levels:
        m = icosphere(lvl)
        v, f = (m[0], m[1]) if isinstance(m, tuple) else (m.verts, m.faces)
        v = v.float().contiguous().requires_grad_(True)
        g = torch.randn_like(v)
        reps = 30 if lvl <= 6 else 12
        fw, fb = [], []
        for _ in range(3):
            vertex_normals(v, f).backward(g)
        for _ in range(reps):
            t = time.perf_counter()
            vertex_normals(v.detach(), f)
            fw.append(time.perf_counter() - t)
            t = time.perf_counter()
            vertex_normals(v, f).backward(g)
            fb.append(time.perf_counter() - t)
        print(f"threads={threads} level={lvl} F={f.shape[0]} V={v.shape[0]} "
              f"fwd {med(fw) * 1e3:.2f} ms  fwd+bwd {med(fb) * 1e3:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
