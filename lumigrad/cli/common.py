"""Argument types shared by the command modules."""
from __future__ import annotations

import argparse
import json
import sys
import os
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so ``--views 0`` is refused by the parser, with its usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def progress_bar(args: argparse.Namespace, total: int, desc: str):
    """A tqdm bar on a terminal, None under ``--quiet`` or when stderr is not a TTY."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True)


def run_training(args: argparse.Namespace, desc: str, train, summary_keys: tuple[str, ...], written: str) -> int:
    """Run ``train(progress)`` with a progress bar; Ctrl-C exits 130 pointing at the checkpoint to resume."""
    bar = progress_bar(args, args.iterations, desc)

    def progress(step, total, info):
        if bar is not None:
            bar.n = step
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in info.items()}, refresh=True)

    try:
        metrics = train(progress)
    except KeyboardInterrupt:
        print(f"lumigrad: interrupted; checkpoint saved to {args.out}/checkpoint.pt (continue with --resume)",
              file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps({k: metrics[k] for k in summary_keys}, indent=2))
    print(f"wrote {args.out}/ ({written})")
    return 0


def set_torch_threads(n: int | None) -> None:
    """Set torch's thread count for this run (``--torch-threads``), keeping the kernels' thread count where it was."""
    if n is None:
        return
    import torch

    os.environ.setdefault("LUMIGRAD_NUM_THREADS", str(torch.get_num_threads()))
    torch.set_num_threads(n)


def check_output_dir(flag: str, path: str) -> Path:
    """Refuse an output folder that cannot be created or written, before any work starts.

    Raises ValueError naming ``flag`` and the problem: the path is an existing
    file, lies under a file, or its nearest existing folder is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path}: exists and is not a folder (give a folder path)")
    anc = p if p.exists() else p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{flag} {path}: {anc} is a file, so no folder can be made under it")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {anc} is not writable")
    return p
