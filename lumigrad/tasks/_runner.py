"""What every task shares: configs (flags or TOML), the output folder and its report.

A task writes one folder: result files, ``target_vs_result.png``, ``loss.png``,
``metrics.json``, ``turntable.gif`` when geometry is involved, and a
self-contained ``report.html`` (images embedded as base64). Every file is
written atomically and only after the fit succeeded, so a failing run (bad
input, NaN) never destroys what an earlier run left in the folder.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import math
import time
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.report import image_grid, save_image, save_loss_curve, save_metrics, save_turntable_gif
from lumigrad.report.metrics import to_jsonable

__all__ = ["TaskOutput", "load_config", "config_fields"]

log = logging.getLogger(__name__)


def config_fields(cls) -> list[tuple[str, type, Any, str]]:
    """``(name, type, default, help)`` of a config dataclass (help from ``metadata["help"]``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, hints[f.name], default, f.metadata.get("help", "")))
    return out


def _coerce(cls_name: str, name: str, typ, value, where: str):
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if typ is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if typ is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if typ is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if origin is tuple:
            inner = typing.get_args(typ)[0]
            return tuple(inner(v) for v in value)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(typ) if a is not type(None)]
            if value is None:
                return None
            return _coerce(cls_name, name, args[0], value, where)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be {getattr(typ, '__name__', typ)}, got {value!r}") from None
    return value


def load_config(cls, toml_path=None, overrides: Mapping[str, Any] | None = None):
    """Build config ``cls`` from its defaults, then a TOML file, then explicit overrides.

    Args:
        cls: a config dataclass.
        toml_path: optional TOML file whose top-level keys are field names.
        overrides: ``name -> value`` (``None`` values are ignored: flag not given).

    Raises:
        FileNotFoundError, ValueError: missing or invalid file, unknown keys, wrong types.
    """
    values: dict[str, Any] = {}
    types = {n: t for n, t, _, _ in config_fields(cls)}
    if toml_path is not None:
        p = Path(toml_path)
        if not p.is_file():
            raise FileNotFoundError(f"config: no such file: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"config: {p} is not valid TOML: {e}") from None
        unknown = sorted(set(data) - set(types))
        if unknown:
            raise ValueError(f"config: {p} has unknown keys {unknown}; known: {sorted(types)}")
        for k, v in data.items():
            values[k] = _coerce(cls.__name__, k, types[k], v, f"config {p}")
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in types:
            raise ValueError(f"config: unknown option {k!r}")
        values[k] = _coerce(cls.__name__, k, types[k], v, "config")
    return cls(**values)


def _b64(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg"}[path.suffix.lower()]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


class TaskOutput:
    """The output folder of one task run; collects what ``report.html`` shows.

    Args:
        out_dir: folder (created on the first write).
        task: task name for titles.
    """

    def __init__(self, out_dir, task: str):
        self.dir = Path(out_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"{task}: output path {self.dir} exists and is not a folder")
        self.task = task
        self.figures: list[tuple[str, Path]] = []
        self.files: list[Path] = []
        self.t0 = time.perf_counter()

    def path(self, name: str) -> Path:
        return self.dir / name

    def image(self, name: str, img: torch.Tensor, caption: str | None = None) -> Path:
        p = save_image(self.dir / name, img.detach().float().clamp(0, 1).cpu())
        self.figures.append((caption or name, p))
        return p

    def grid(self, rows: Sequence[Sequence[torch.Tensor]], labels: Sequence[str], name: str = "target_vs_result.png",
             caption: str = "target vs result") -> Path:
        g = image_grid([[x.detach().float().clamp(0, 1).cpu() for x in r] for r in rows], labels=list(labels))
        return self.image(name, g, caption)

    def loss_curve(self, history, title: str, name: str = "loss.png") -> Path:
        p = save_loss_curve(self.dir / name, history, title=title)
        self.figures.append(("loss curve", p))
        return p

    def turntable(self, frames: torch.Tensor, name: str = "turntable.gif", caption: str = "turntable") -> Path:
        p = save_turntable_gif(self.dir / name, frames.detach().float().clamp(0, 1).cpu())
        self.figures.append((caption, p))
        return p

    def file(self, p: Path) -> Path:
        self.files.append(Path(p))
        return Path(p)

    def finish(self, metrics: Mapping[str, Any], config=None, summary: str = "") -> dict:
        """Write ``metrics.json`` and ``report.html``; return the metrics (with timing)."""
        m = dict(metrics)
        m.setdefault("seconds_total", time.perf_counter() - self.t0)
        if config is not None and dataclasses.is_dataclass(config):
            m["config"] = dataclasses.asdict(config)
        save_metrics(self.dir / "metrics.json", m)
        self.files.append(self.dir / "metrics.json")
        self._report(m, summary)
        return m

    def _report(self, metrics: Mapping[str, Any], summary: str) -> None:
        rows = []
        for k, v in to_jsonable(metrics).items():
            if k == "config":
                continue
            if isinstance(v, float):
                v = f"{v:.6g}" if math.isfinite(v) else str(v)
            elif isinstance(v, (dict, list)):
                v = json.dumps(v)
            rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>")
        figs = "\n".join(
            f'<figure><img alt="{html.escape(c)}" src="{_b64(p)}"><figcaption>{html.escape(c)}</figcaption></figure>'
            for c, p in self.figures
        )
        files = "".join(f"<li>{html.escape(p.name)}</li>" for p in self.files + [p for _, p in self.figures])
        cfg = html.escape(json.dumps(to_jsonable(metrics.get("config", {})), indent=2))
        doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lumigrad {html.escape(self.task)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}figure{{display:inline-block;margin:1em}}
img{{min-width:320px;max-width:100%;image-rendering:pixelated}}</style></head>
<body><h1>lumigrad {html.escape(self.task)}</h1><p>{html.escape(summary)}</p>
<h2>Metrics</h2><table>{''.join(rows)}</table>
<h2>Figures</h2>{figs}
<h2>Files</h2><ul>{files}</ul>
<h2>Configuration</h2><pre>{cfg}</pre></body></html>
"""
        write_text_atomic(self.dir / "report.html", doc)
