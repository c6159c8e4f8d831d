"""Metrics recorded from inside notebooks: ``record("00.n_skus", 2238)``.

Each notebook's metrics land in ``runs/<profile>/metrics/<nb>.json`` (the prefix before the first
dot names the notebook); the runner merges them into ``runs/<profile>/metrics.json``. Keys are
stable: tests, benchmarks and the report read them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .paths import current_profile, runs_dir


def _metrics_dir(profile: str | None = None) -> Path:
    return runs_dir() / (profile or current_profile()) / "metrics"


def _plain(value):
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, (int, float, str, bool)) and value is not None:
        raise TypeError(f"record() takes numbers or strings, got {type(value).__name__}")
    return value


def record(key: str, value) -> None:
    """Store one metric, e.g. ``record("01.recall@1.aligned", 0.41)``.

    The part of ``key`` before the first dot (``"01"``) names the notebook file it goes to.
    """
    if "." not in key:
        raise ValueError(f"metric key {key!r} must look like '<notebook>.<name>', e.g. '00.n_skus'")
    notebook = key.split(".", 1)[0]
    path = _metrics_dir() / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics[key] = _plain(value)
    _write_atomic(path, json.dumps(metrics, indent=1, sort_keys=True))


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def record_table(key: str, table, digits: int = 3) -> Path:
    """Store a results table (a DataFrame) as Markdown for the run's report.

    ``record_table("02.sid_report", df)`` writes ``runs/<profile>/tables/02.sid_report.md``; the
    runner copies every table into ``runs/<profile>/report.md``.
    """
    if "." not in key:
        raise ValueError(f"table key {key!r} must look like '<notebook>.<name>', e.g. '02.sid_report'")
    path = runs_dir() / current_profile() / "tables" / f"{key}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, markdown_table(table, digits))
    return path


def record_figure(key: str, fig, caption: str) -> Path:
    """Store a key figure (PNG) and its one-line caption for the run's report.

    ``record_figure("05.pareto", fig, "latency vs HR@10")`` writes
    ``runs/<profile>/figures/05.pareto.png`` (and ``.txt`` for the caption).
    """
    if "." not in key:
        raise ValueError(f"figure key {key!r} must look like '<notebook>.<name>', e.g. '05.pareto'")
    folder = runs_dir() / current_profile() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.png"
    tmp = folder / f".{key}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
    _write_atomic(folder / f"{key}.txt", caption.strip())
    return path


def load_figures(profile: str | None = None) -> dict:
    """Figures recorded under a profile: key → (PNG path, caption), in key order."""
    folder = runs_dir() / (profile or current_profile()) / "figures"
    return {p.stem: (p, p.with_suffix(".txt").read_text() if p.with_suffix(".txt").exists() else "")
            for p in sorted(folder.glob("*.png"))}


def markdown_table(table, digits: int = 3) -> str:
    """A DataFrame as a GitHub Markdown table (index as the first column, floats rounded)."""
    def cell(v):
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)

    head = [str(table.index.name or "")] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, *values in table.itertuples():  # itertuples keeps each column's type
        lines.append("| " + " | ".join([str(name)] + [cell(v) for v in values]) + " |")
    return "\n".join(lines) + "\n"


def load_tables(profile: str | None = None) -> dict:
    """Tables recorded under a profile: key → Markdown text, in key order."""
    folder = runs_dir() / (profile or current_profile()) / "tables"
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.md"))}


def load_metrics(profile: str | None = None) -> dict:
    """All metrics recorded under a profile, merged across notebooks."""
    merged = {}
    for path in sorted(_metrics_dir(profile).glob("*.json")):
        merged.update(json.loads(path.read_text()))
    return merged
