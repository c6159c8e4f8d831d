"""Metrics recorded from inside notebooks: ``record("00.n_skus", 2238)``.

Each notebook's metrics land in ``runs/<profile>/metrics/<nb>.json`` (the prefix before the first
dot names the notebook); the runner merges them into ``runs/<profile>/metrics.json``. Keys are
stable: tests, benchmarks and the report read them.

**Quality vs timing.** A key whose name (split at dots, underscores and ``@``) holds one of
:data:`TIMING_WORDS` — a time (``seconds``, ``_s``, ``_ms``, ``latency``), a speed (``speedup``,
``speed_ratio``) or a memory size (``_gb``, ``_mb``, ``memory``) — is a *timing*, a measurement of the
machine: it changes from run to run, so the runner keeps timings apart, in
``runs/<profile>/timings.json``, and ``metrics.json`` holds only the quality metrics, which a
re-run with the same parameters on one machine reproduces bit for bit (``ovkit compare``).

Each file also records its provenance under the reserved key ``_provenance``: the parameter hash of
the run (``OVKIT_PARAMS_HASH``, set by the runner; ``interactive`` by hand), the code's git commit
(``OVKIT_COMMIT``, or computed here) and the profile. A file only ever holds numbers of one
provenance: recording under another starts the file afresh.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from .paths import current_profile, current_run, project_root, runs_dir

PROVENANCE_KEY = "_provenance"  # reserved: not a metric; load_metrics skips keys starting with "_"
PARAMS_ENV, COMMIT_ENV = "OVKIT_PARAMS_HASH", "OVKIT_COMMIT"
# Words of a metric's name that make it a timing or resource measurement (units of time, speed and
# memory): e.g. 00.build_seconds, 03.latency_ms.p50.mca, 05.speedup_at_1pct, 07.vrq_fit_s, 07.vrq_peak_gb
TIMING_WORDS = frozenset({"seconds", "secs", "sec", "s", "ms", "us", "ns", "minutes", "hours", "time",
                          "latency", "speed", "speedup", "throughput", "qps",
                          "memory", "mem", "rss", "bytes", "kb", "mb", "gb", "kib", "mib", "gib"})


CI_SUFFIXES = ("", "_ci_low", "_ci_high")  # an estimate and its 95% interval are three metrics


def interval_keys(key: str) -> tuple[str, str, str]:
    """The keys of an estimate and its 95% CI: ``key``, ``key_ci_low``, ``key_ci_high``."""
    return tuple(key + suffix for suffix in CI_SUFFIXES)


def is_timing(key: str) -> bool:
    """Is this metric a time, speed or memory measurement (varies between runs) rather than a quality
    number? Whole words count (``00.n_skus`` holds an ``s`` but no word ``s``)."""
    words = re.split(r"[._@]", key.split(".", 1)[-1].lower())
    return not TIMING_WORDS.isdisjoint(words)


def _metrics_dir(profile: str | None = None) -> Path:
    return runs_dir() / (profile or current_run()) / "metrics"


def _plain(value):
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, (int, float, str, bool)) and value is not None:
        raise TypeError(f"record() takes numbers or strings, got {type(value).__name__}")
    return value


def git_commit(root: Path | None = None) -> str:
    """The checkout's short commit, ``+dirty`` with uncommitted changes to tracked files; else ``unknown``."""
    root = root or project_root()
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # a read-only look: never take the index lock

    def git(*args) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10, env=env)
        except (OSError, subprocess.SubprocessError):  # no git, or it hung
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "--short", "HEAD")
    if not sha:
        return "unknown"
    status = git("status", "--porcelain", "--untracked-files=no")
    clean = status == ""  # a status git could not give counts as dirty: it cannot vouch for the numbers
    return sha if clean else f"{sha}+dirty"


@functools.cache
def _session_commit(root: Path) -> str:
    """The commit for interactive use, computed once per process (git is slow-ish, and record is hot)."""
    return git_commit(root)


def current_provenance() -> dict:
    """Where numbers recorded now come from: parameter hash, commit and profile."""
    return {"params": os.environ.get(PARAMS_ENV) or "interactive",
            "commit": os.environ.get(COMMIT_ENV) or _session_commit(project_root()),
            "profile": current_profile()}


def record(key: str, value) -> None:
    """Store one metric, e.g. ``record("01.recall@1.aligned", 0.41)``.

    The part of ``key`` before the first dot (``"01"``) names the notebook file it goes to. The file
    is started afresh when its numbers came from another parameter set, commit or profile.
    """
    if "." not in key or key.startswith("_"):
        raise ValueError(f"metric key {key!r} must look like '<notebook>.<name>', e.g. '00.n_skus'")
    notebook = key.split(".", 1)[0]
    path = _metrics_dir() / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = current_provenance()
    metrics = json.loads(path.read_text()) if path.exists() else {}
    if metrics.get(PROVENANCE_KEY) != provenance:  # older numbers came from another run: don't mix them
        metrics = {}
    metrics[key] = _plain(value)
    metrics[PROVENANCE_KEY] = provenance
    write_atomic(path, json.dumps(metrics, indent=1, sort_keys=True))


def record_interval(key: str, interval) -> None:
    """Store an estimate with its 95% CI, ``(estimate, low, high)``, under :func:`interval_keys`."""
    values = tuple(interval)
    if len(values) != 3:
        raise ValueError(f"record_interval({key!r}, …) takes (estimate, low, high), got {len(values)} values")
    for name, value in zip(interval_keys(key), values, strict=True):
        record(name, value)


def read_timings(folder: Path) -> dict:
    """A run's ``timings.json``: ``{"notebooks": {name: {seconds, status}}, "metrics": {key: value}}``."""
    path = folder / "timings.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    return {"notebooks": saved.get("notebooks", {}), "metrics": saved.get("metrics", {})}


def format_value(value) -> str:
    """A metric as a report shows it: floats to 4 significant digits, anything else as text."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_atomic(path: Path, text: str) -> None:
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
    path = runs_dir() / current_run() / "tables" / f"{key}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, markdown_table(table, digits))
    return path


def record_figure(key: str, fig, caption: str) -> Path:
    """Store a key figure (PNG) and its one-line caption for the run's report.

    ``record_figure("05.pareto", fig, "latency vs HR@10")`` writes
    ``runs/<profile>/figures/05.pareto.png`` (and ``.txt`` for the caption).
    """
    if "." not in key:
        raise ValueError(f"figure key {key!r} must look like '<notebook>.<name>', e.g. '05.pareto'")
    folder = runs_dir() / current_run() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.png"
    tmp = folder / f".{key}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
    write_atomic(folder / f"{key}.txt", caption.strip())
    return path


def load_figures(profile: str | None = None) -> dict:
    """Figures recorded under a profile: key → (PNG path, caption), in key order."""
    folder = runs_dir() / (profile or current_run()) / "figures"
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
    folder = runs_dir() / (profile or current_run()) / "tables"
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.md"))}


def _metric_files(profile: str | None) -> dict:
    """Notebook → contents of its metrics file, in notebook order."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(_metrics_dir(profile).glob("*.json"))}


def load_metrics(profile: str | None = None, kind: str = "all") -> dict:
    """Metrics recorded under a profile, merged across notebooks (reserved ``_`` keys left out).

    Args:
        kind: ``"all"``, ``"quality"`` (no timings) or ``"timing"`` (see :func:`is_timing`).
    """
    if kind not in ("all", "quality", "timing"):
        raise ValueError(f"kind must be 'all', 'quality' or 'timing', got {kind!r}")
    merged = {}
    for metrics in _metric_files(profile).values():
        merged.update({k: v for k, v in metrics.items() if not k.startswith("_")
                       and (kind == "all" or is_timing(k) == (kind == "timing"))})
    return merged


def run_folder(run: str | Path) -> Path:
    """A run's folder from a path (``runs/smoke``, a copy elsewhere) or a profile name (``smoke``)."""
    path = Path(run)
    if (path / "metrics.json").exists():
        return path
    if (runs_dir() / str(run) / "metrics.json").exists():
        return runs_dir() / str(run)
    places = dict.fromkeys([str(path), str(runs_dir() / str(run))])  # one entry when they are the same
    raise FileNotFoundError(f"no metrics.json in {' or '.join(places)}: give a run folder or a profile "
                            "that has run (ovkit run --profile ...)")


def run_metrics(folder: Path, timings: bool = True) -> dict:
    """A finished run's quality metrics (``metrics.json``), with its timing metrics unless told not to;
    empty when the run recorded none."""
    path = folder / "metrics.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    return values | read_timings(folder)["metrics"] if timings else values


def run_commits(run: str | None = None) -> list[str]:
    """The code commits a run's metrics files came from (one when the run is consistent)."""
    return sorted({(p or {}).get("commit", "?") for p in load_provenance(run).values()})


def compare_runs(a: str | Path, b: str | Path, rtol: float = 0.0, atol: float = 0.0,
                 timings: bool = False) -> list[dict]:
    """The metrics that differ between two runs: missing on one side, or apart beyond the tolerance.

    Args:
        a, b: run folders or profile names (see :func:`run_folder`).
        rtol, atol: numbers count as equal when ``|x - y| <= atol + rtol * |y|`` (default: exact).
        timings: also compare the timing metrics of ``timings.json`` (they are never bit-identical).
    Returns:
        One dict per difference: ``key``, ``a``, ``b`` (None when missing) and ``why``.
    """
    def read(run):
        return run_metrics(run_folder(run), timings)

    left, right = read(a), read(b)
    differences = []
    for key in sorted(set(left) | set(right)):
        x, y = left.get(key), right.get(key)
        if key not in left or key not in right:
            differences.append({"key": key, "a": x, "b": y, "why": f"only in {'b' if key in right else 'a'}"})
        elif _numeric(x) and _numeric(y):
            if not math.isclose(x, y, rel_tol=rtol, abs_tol=atol):
                differences.append({"key": key, "a": x, "b": y, "why": f"differs by {x - y:+.3g}"})
        elif x != y:
            differences.append({"key": key, "a": x, "b": y, "why": "differs"})
    return differences


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_provenance(profile: str | None = None) -> dict:
    """Notebook → provenance of its metrics file (``None`` for files written before provenance)."""
    return {nb: metrics.get(PROVENANCE_KEY) for nb, metrics in _metric_files(profile).items()}


def provenance_warning(profile: str | None = None) -> str | None:
    """A one-paragraph warning when the profile's metrics come from different runs; None when they agree."""
    groups: dict = {}
    for nb, prov in load_provenance(profile).items():
        origin = (prov.get("params"), prov.get("commit")) if isinstance(prov, dict) else None
        groups.setdefault(origin, []).append(nb)
    if len(groups) <= 1 and None not in groups:
        return None
    parts = []
    for origin, notebooks in groups.items():
        names = f"notebook{'s' if len(notebooks) > 1 else ''} {', '.join(notebooks)}"
        parts.append(f"{names}: no provenance (recorded by an older kit)" if origin is None
                     else f"{names}: parameters {origin[0]}, commit {origin[1]}")
    return ("These metrics do not all come from one run, so they may not be comparable — "
            + "; ".join(parts) + ". A full `ovkit run` of the profile (without --only / --from) "
            "records them all afresh.")
