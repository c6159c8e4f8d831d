"""``ovkit sweep``: many ``ovkit run``s — seeds × a grid of parameters — on Ray or one after another.

A spec file (``sweeps/seeds.yaml``) names a profile, a list of seeds and an optional grid::

    profile: default
    seeds: [0, 1, 2]
    grid: {GEN: [{dpo: pairwise}, {dpo: listwise}]}   # optional: every combination × every seed
    parameters: {AB: {users: 500}}                     # optional: set for every point
    vary: [data, shoppers, models]                     # optional: each source of variation apart
    notebooks: ["04"]                                  # optional: run only these (default: all)

A seed is a whole new world: the point's ``SEED`` and every component's seed (:mod:`ovkit.seeds`) —
written into the point's parameters, so each point records what it used. With ``vary``, each listed
source (``data``: the catalogue; ``shoppers``: SIM and AB; ``models``: ALIGN, VRQ, MCA, GEN) gets
its own points, in which only that source follows the seed and the rest keep the profile's SEED:
the summary then shows which source moves each effect most. Points that would be identical (e.g.
``vary: [data]`` on a dataset folder, whose catalogue ignores SEED) refuse to start.

Each *point* (one grid cell × one source × one seed) is an ``ovkit run`` of the profile with
those overrides (every notebook, or only the spec's ``notebooks``: their upstream stages are built on
demand through the stage cache, so a sweep of notebook 04's quantities need not run 05-07),
recorded in ``runs/<sweep>/<point>/`` (metrics, executed notebooks, report.md); the sweep is named
``<spec file stem>-<profile>`` (``runs/seeds-default/``). Points share the stage cache, so stages
whose parameters do not change between points are built once (and the cache lock in
:mod:`ovkit.store` keeps two points from building one stage at once).

Engines: ``ray`` schedules each point as a Ray task with its CPU/GPU needs (a local Ray runtime, or a
cluster joined with ``--address``); ``local`` runs the points one after another in this process. A
failed point is reported and the others go on; running the sweep again skips the finished points and
retries the rest.

The summary (``runs/<sweep>/summary.md``, ``summary.json``, :func:`ovkit.seedstats.load`) gives every
metric per point, per grid cell every metric over seeds, and a **seed-level ledger**: each claim's
effect pooled over the seeds by a random-effects meta-analysis that uses each run's own interval
(:mod:`ovkit.meta`) and judged by its own rule, beside the τ² between seeds and each seed's own
verdict; the statistics are :mod:`ovkit.seedstats`.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from . import meta, runner, seeds, seedstats
from .config import progress
from .data import folder
from .paths import project_root, runs_dir
from .results import format_value, markdown_table, run_commits, run_metrics, write_atomic
from .runner import RunError
from .seedstats import BASE_CELL, WORLD

SPEC_KEYS = {"profile": "the params/<profile>.yaml every point starts from",
             "seeds": "a list of seeds (SEED), or a count n for seeds 0..n-1",
             "grid": "parameter name -> list of values; every combination is run for every seed",
             "parameters": "overrides for every point (like -p)",
             "vary": f"sources of variation varied apart, from {', '.join(seeds.SOURCES)} "
                     "(default: all at once)",
             "notebooks": "the notebooks each point runs, by number (default: all), e.g. ['04']"}
ENGINES = ("ray", "local")
# Passed to every point's process (Ray workers on other machines do not inherit this shell).
FORWARDED_ENV = ("TQDM_DISABLE", "MPLBACKEND", "PYTHONHASHSEED", "OVKIT_ROOT", "OVKIT_DATA",
                 "OVKIT_ARTIFACTS", "OVKIT_RUNS", "OVKIT_SH3D", "OVKIT_THREADS")
# Printed per finished point (those the point recorded).
HEADLINE = ("01.recall@1.aligned", "02.consistency@1.vrq", "04.hr@10.dpo", "04.hr@10.mca_reference",
            "05.speedup_total_at_1pct", "06.orders.lift")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: a grid cell, a source of variation and a seed."""

    id: str  # folder name under runs/<sweep>/, e.g. "seed-1", "shoppers_seed-1", "GEN.dpo=listwise_seed-1"
    cell: str  # the grid cell, e.g. "GEN.dpo=listwise" ("base" without a grid)
    seed: int
    overrides: dict  # everything the point sets over the profile: parameters, grid values, every seed
    source: str = WORLD  # what the seed varies: "world" (everything) or one of seeds.SOURCES


@dataclass
class Sweep:
    """A validated spec: what to run."""

    name: str
    profile: str
    seeds: list
    grid: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    vary: tuple = (WORLD,)
    base: dict = field(default_factory=dict)  # the profile's values (its SEED and settings dicts)
    declared: frozenset | None = None  # the notebooks' parameter names (None: every component)
    notebooks: tuple = ()  # the notebooks each point runs (empty: all)

    @property
    def folder(self) -> Path:
        return runs_dir() / self.name

    def cells(self) -> dict:
        """Grid cell label → the overrides it sets (one ``base`` cell without a grid)."""
        if not self.grid:
            return {BASE_CELL: {}}
        names = list(self.grid)
        cells = {}
        for combo in itertools.product(*(self.grid[n] for n in names)):
            values = dict(zip(names, combo, strict=True))
            cells[_cell_label(values)] = values
        return cells

    def points(self) -> list[Point]:
        points = []
        for cell, values in self.cells().items():
            given = {**self.base, **self.parameters, **values}
            for source in self.vary:
                varied = seeds.SOURCES if source == WORLD else (source,)
                for seed in self.seeds:
                    pid = f"seed-{seed}" if source == WORLD else f"{source}_seed-{seed}"
                    pid = pid if cell == BASE_CELL else f"{_folder_safe(cell)}_{pid}"
                    pinned = seeds.pinned(given, seed, varied, self.base.get("SEED", 0))
                    pinned = {k: v for k, v in pinned.items() if self.declared is None or k in self.declared}
                    points.append(Point(pid, cell, seed, {**self.parameters, **values, **pinned}, source))
        return points

    def groups(self) -> dict:
        """Group label → (cell, source): the points pooled together (a cell's seeds for one source)."""
        out = {}
        for cell in self.cells():
            for source in self.vary:
                label = cell if source == WORLD else source if cell == BASE_CELL else f"{cell} · {source}"
                out[label] = (cell, source)
        return out


def _cell_label(values: dict) -> str:
    """``{"GEN": {"dpo": "listwise"}, "N_MODELS": 40}`` → ``GEN.dpo=listwise,N_MODELS=40``."""
    parts = []
    for name, value in values.items():
        if isinstance(value, dict):
            parts += [f"{name}.{k}={_text(v)}" for k, v in value.items()]
        else:
            parts.append(f"{name}={_text(value)}")
    return ",".join(parts) or BASE_CELL


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _folder_safe(label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._=,-]+", "_", label)
    if len(safe) > 80:  # long labels: a readable prefix and a hash keep names unique
        safe = safe[:64] + "-" + runner.params_hash({"cell": label})[:8]
    return safe


def spec_path(spec: str | Path) -> Path:
    """A spec file from a path or a name in ``sweeps/`` (``seeds`` → ``sweeps/seeds.yaml``)."""
    path = Path(spec)
    if path.is_file():
        return path
    named = project_root() / "sweeps" / f"{spec}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in (project_root() / "sweeps").glob("*.yaml"))
    raise RunError(f"no sweep spec {spec}: give a YAML file or one of sweeps/: {', '.join(known) or 'none'}")


def load_spec(spec: str | Path, profile: str | None = None, overrides: list[str] | None = None) -> Sweep:
    """Read and check a spec file; ``profile`` and ``-p`` overrides replace the spec's own.

    Raises:
        RunError: an unknown key (listing the valid ones), a bad seed list or grid, SEED set outside
            ``seeds``.
    """
    path = spec_path(spec)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise RunError(f"{path} must be a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = [k for k in raw if k not in SPEC_KEYS]
    if unknown:
        close = {k: difflib.get_close_matches(str(k), SPEC_KEYS, 1) for k in unknown}
        hints = [f"{k!r}" + "".join(f" (did you mean {m!r}?)" for m in match) for k, match in close.items()]
        valid = "; ".join(f"{k}: {v}" for k, v in SPEC_KEYS.items())
        raise RunError(f"unknown key(s) in {path}: {', '.join(hints)}. Valid keys — {valid}")
    profile = profile or raw.get("profile")
    if not profile:
        raise RunError(f"{path} names no profile: add 'profile: smoke' (or default, paper) or pass --profile")
    seed_list = raw.get("seeds", [0])
    if isinstance(seed_list, int) and not isinstance(seed_list, bool):
        seed_list = list(range(seed_list))
    if (not isinstance(seed_list, list) or not seed_list or len(set(seed_list)) != len(seed_list)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seed_list)):
        raise RunError(f"{path}: seeds must be a count or a non-empty list of distinct integers, "
                       f"got {seed_list!r}")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise RunError(f"{path}: grid must map parameter names to non-empty lists of values, got {grid!r}")
    parameters = {**(raw.get("parameters") or {}), **runner.parse_overrides(overrides or [])}
    if "SEED" in grid or "SEED" in parameters:
        raise RunError(f"{path}: set seeds with the 'seeds' key, not as a parameter or grid entry")
    vary = raw.get("vary") or [WORLD]
    if not isinstance(vary, list) or len(set(vary)) != len(vary) or set(vary) - {WORLD, *seeds.SOURCES}:
        raise RunError(f"{path}: vary must be a list of distinct sources from {WORLD}, "
                       f"{', '.join(seeds.SOURCES)}; got {vary!r}")
    discovered = runner.discover()
    declared = frozenset(name for nb in discovered for name in nb.parameters)
    chosen = raw.get("notebooks") or []
    if not isinstance(chosen, list) or not all(isinstance(n, str) for n in chosen):
        raise RunError(f"{path}: notebooks must be a list of notebook numbers as strings "
                       f"(e.g. ['04']), got {chosen!r}")
    try:
        runner.select(discovered, chosen, None)
    except RunError as err:
        raise RunError(f"{path}: {err}") from err
    try:
        base = runner.load_profile(profile)
    except RunError:  # an unknown profile: validate() reports it with every other problem
        base = {}
    return Sweep(f"{path.stem}-{profile}", profile, seed_list, grid, parameters, tuple(vary), base, declared,
                 tuple(chosen))


def validate(sweep: Sweep) -> dict:
    """Check every point's parameters before anything runs; point id → its full parameter values.

    Raises:
        RunError: a bad parameter, or two points that would run the same world (nothing would vary).
    """
    notebooks = runner.discover()
    values, sources = {}, set()
    for point in sweep.points():
        source = point.overrides.get("DATA_SOURCE")
        values[point.id] = runner.prepare(sweep.profile, point.overrides, origin=f"sweep point {point.id}",
                                          notebooks=notebooks, check_data=source not in sources,
                                          verbose=not values)
        sources.add(source)
    check_distinct(values)
    return values


def world_key(values: dict) -> str:
    """What makes a run's world: its parameters, less SEED where the catalogue ignores it (a folder)."""
    if folder.is_folder_dataset(values.get("DATA_SOURCE") or ""):
        values = {k: v for k, v in values.items() if k != "SEED"}
    return runner.params_hash(values)


def check_distinct(values: dict) -> None:
    """Refuse a sweep with points that would be identical runs: their spread would be zero by design."""
    seen, same = {}, []
    for pid, v in values.items():
        key = world_key(v)
        if key in seen:
            same.append(f"{seen[key]} = {pid}")
        seen.setdefault(key, pid)
    if same:
        raise RunError(f"these sweep points would run the same world: {'; '.join(same)}. A dataset folder's "
                       "catalogue ignores SEED (vary shoppers or models, not data), and vary: with several "
                       "sources needs seeds other than the profile's SEED (e.g. seeds: [1, 2, 3]).")


# --- running -----------------------------------------------------------------------------------------


def run_point(profile: str, name: str, overrides: dict, env: dict, only: list | None = None) -> dict:
    """Run one point (in a Ray worker or in this process); returns its outcome, never raises a RunError.

    The outcome holds ``status`` (ok / failed), ``error``, ``seconds`` and the point's ``metrics``
    (quality and timing), so the driver can summarise even when ``runs/`` is not on shared storage.
    """
    started = time.perf_counter()
    error = None
    with runner.kernel_env(env):
        try:
            runner.run(profile, only=only or None, overrides=overrides, name=name)
        except Exception as err:  # a failed point is reported; the sweep goes on
            error = f"{type(err).__name__}: {err}" if not isinstance(err, RunError) else str(err)
        folder = runs_dir() / name
    return {"status": "failed" if error else "ok", "error": error, "commit": ",".join(run_commits(name)),
            "seconds": round(time.perf_counter() - started, 1), "metrics": run_metrics(folder)}


def _status_file(sweep: Sweep, point: Point) -> Path:
    return sweep.folder / point.id / "status.json"


def finished(sweep: Sweep, values: dict) -> set:
    """Points whose run finished with the same parameters (these are skipped on a re-run)."""
    done = set()
    for point in sweep.points():
        path = _status_file(sweep, point)
        if path.exists():
            status = json.loads(path.read_text())
            same = status.get("params") == runner.params_hash(values[point.id])
            if status.get("status") == "ok" and same and status.get("notebooks", []) == list(sweep.notebooks):
                done.add(point.id)
    return done


def _point_env(threads: int | None) -> dict:
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    env.setdefault("OVKIT_ROOT", str(project_root()))
    if threads:
        env["OVKIT_THREADS"] = str(threads)
    return env


def _local(sweep: Sweep, todo: list[Point], threads: int | None):
    for point in todo:
        name = f"{sweep.name}/{point.id}"
        yield point, run_point(sweep.profile, name, point.overrides, _point_env(threads),
                               list(sweep.notebooks))


def check_address(address: str | None, timeout: float = 3.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) Ray address must answer before ``ray.init`` tries it:
    Ray retries an unreachable address for about 30 s and logs each attempt before its own error."""
    if not address or address == "auto" or ":" not in address:
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise RunError(f"no Ray cluster at --address {address} ({err}): start one there with "
                       "'ray start --head' (see the README), or leave --address out for a local Ray") from err


def _ray(sweep: Sweep, todo: list[Point], address: str | None, cpus: int | None, gpus: float):
    try:
        import ray
    except ImportError as err:
        raise RunError("--engine ray needs Ray: pip install -e '.[sweep]' (make seeds installs it), "
                       "or run with --engine local") from err
    started_here = not ray.is_initialized()
    if started_here:
        check_address(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": _point_env(None)})
        except ConnectionError as err:
            raise RunError(f"no Ray cluster at --address {address}: start one with 'ray start --head' "
                           f"(see the README), or leave --address out for a local Ray ({err})") from err
    try:
        available = ray.cluster_resources()
        cpus = cpus or int(min(2, available.get("CPU", 1)))
        for need, what in ((cpus, "CPU"), (gpus, "GPU")):
            have = available.get(what, 0)
            if need > have:
                raise RunError(f"each point asks for {need} {what}s but the Ray cluster has {have:g}: lower "
                               f"--{what.lower()}s-per-run or add machines")
        # A fresh worker process per point (max_calls=1); no automatic retry: a failure is reported.
        task = ray.remote(max_calls=1)(run_point).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        pending = {task.remote(sweep.profile, f"{sweep.name}/{p.id}", p.overrides, _point_env(cpus),
                               list(sweep.notebooks)): p for p in todo}
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            point = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as err:  # the worker died: killed, out of memory, node lost
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                outcome = {"status": "failed", "seconds": None, "metrics": {},
                           "error": f"the point's process died ({type(err).__name__}): {first}"}
            yield point, outcome
    finally:
        if started_here:
            ray.shutdown()


def default_engine() -> str:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "local"
    return "ray"


def run(spec: str | Path, profile: str | None = None, overrides: list[str] | None = None,
        engine: str | None = None, address: str | None = None, cpus_per_run: int | None = None,
        gpus_per_run: float = 0, track: bool = False) -> Path:
    """Run a sweep's unfinished points and write its summary; returns ``runs/<sweep>/summary.md``.

    ``track``: log the sweep to MLflow (:func:`ovkit.track.log_sweep`) once its summary is written.

    Raises:
        RunError: before anything runs, for a bad spec or parameter; after the summary is written, when
            some points failed (each named with its notebook and cell).
    """
    sweep = load_spec(spec, profile, overrides)
    engine = engine or default_engine()
    if engine not in ENGINES:
        raise RunError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
    if engine == "local" and (address or gpus_per_run):
        raise RunError("--address and --gpus-per-run need --engine ray")
    values = validate(sweep)
    runner.check_kernel()
    sweep.folder.mkdir(parents=True, exist_ok=True)
    write_atomic(sweep.folder / "sweep.json", json.dumps(
        {"name": sweep.name, "profile": sweep.profile, "seeds": sweep.seeds, "grid": sweep.grid,
         "parameters": sweep.parameters, "vary": list(sweep.vary), "notebooks": list(sweep.notebooks)},
        indent=1, default=str))
    points = sweep.points()
    done = finished(sweep, values)
    todo = [p for p in points if p.id not in done]
    sources = f" × {len(sweep.vary)} sources ({', '.join(sweep.vary)})" if sweep.vary != (WORLD,) else ""
    only = f", notebooks {', '.join(sweep.notebooks)} only" if sweep.notebooks else ""
    print(f"sweep {sweep.name}: {len(points)} points ({len(sweep.cells())} grid cell(s){sources} × "
          f"{len(sweep.seeds)} seed(s){only}); {len(done)} finished earlier, {len(todo)} to run with "
          f"engine {engine}")
    started = time.perf_counter()
    outcomes = (_ray(sweep, todo, address, cpus_per_run, gpus_per_run) if engine == "ray" and todo
                else _local(sweep, todo, cpus_per_run))
    for point, outcome in progress(outcomes, total=len(todo), desc=f"ovkit sweep {sweep.name}", unit="point"):
        outcome["params"] = runner.params_hash(values[point.id])
        outcome["notebooks"] = list(sweep.notebooks)
        _status_file(sweep, point).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(_status_file(sweep, point), json.dumps(outcome, indent=1, sort_keys=True))
        print(_point_line(point, outcome), flush=True)
    wall = round(time.perf_counter() - started, 1)
    path = write_summary(sweep, engine=engine, seconds=wall)
    if track:
        from . import track as tracking

        summary = json.loads((sweep.folder / "summary.json").read_text())
        run_id = tracking.log_sweep(sweep.folder, summary, values)
        print(f"MLflow: sweep run {run_id} in {tracking.default_uri()}")
    failed = [p.id for p in points if json.loads(_status_file(sweep, p).read_text())["status"] != "ok"]
    if failed:
        raise RunError(f"{len(failed)} of {len(points)} points failed ({', '.join(failed)}); the summary "
                       f"of the others is {path}. Fix the cause and run the same sweep again: finished "
                       "points are skipped, failed ones retried.")
    return path


POOLING = ("Each claim's effect is pooled over the seeds by a random-effects meta-analysis (each run's "
           "own standard error from its 95% interval, plus the between-seed variance τ²; Paule–Mandel τ², "
           "modified Hartung–Knapp t-interval, `ovkit.meta`) and judged by its own rule "
           "(`ovkit.report.CLAIMS`); the pooled interval covers the mean effect over worlds like these "
           "seeds', so it is wider than one run's whenever the seeds disagree beyond their own noise. "
           "'each seed' gives every seed's own verdict.")


def _point_line(point: Point, outcome: dict) -> str:
    if outcome["status"] != "ok":
        return f"✗ {point.id} failed: {outcome['error']}"
    shown = [f"{k} {format_value(outcome['metrics'][k])}" for k in HEADLINE if k in outcome["metrics"]]
    return f"✓ {point.id} ({outcome['seconds'] / 60:.1f} min): " + (" · ".join(shown) or "no headline metric")



def summarise(sweep: Sweep) -> dict:
    """The summary of a sweep from its points' status files (finished points only enter the statistics).

    ``cells`` holds one entry per group of pooled points: a grid cell (without ``vary``), or a grid
    cell and one source of variation (``groups`` maps each label to its cell and source).
    """
    points, cells = {}, {}
    for point in sweep.points():
        path = _status_file(sweep, point)
        status = json.loads(path.read_text()) if path.exists() else {"status": "not run", "metrics": {}}
        if "commit" not in status and path.exists():  # a status written before points named their commit
            status["commit"] = ",".join(run_commits(f"{sweep.name}/{point.id}"))
        used = seeds.component_seeds(runner.merge_overrides(sweep.base, point.overrides)[0])
        points[point.id] = {"cell": point.cell, "source": point.source, "seed": point.seed,
                            "component_seeds": used, **status}
    groups = sweep.groups()
    for label, (cell, source) in groups.items():
        ok = [pid for pid, p in points.items()
              if p["cell"] == cell and p["source"] == source and p["status"] == "ok"]
        overrides = sweep.cells()[cell]
        entry = {"overrides": overrides, "source": source, "points": ok,
                 "seeds": [points[p]["seed"] for p in ok]}
        if ok:
            per_seed = [points[p]["metrics"] for p in ok]
            combined = seedstats.across_seeds(per_seed)
            stats = combined[1]
            table = seedstats.seed_ledger(per_seed, combined, entry["seeds"])
            entry["metrics"] = {k: {n: seedstats.json_number(v) for n, v in s.items()}
                                for k, s in stats.items()}
            entry["ledger"] = json.loads(table.to_json(orient="records"))
            entry["records"] = seedstats.records(stats, table, len(ok))
        cells[label] = entry
    summary = {"sweep": sweep.name, "profile": sweep.profile, "seeds": sweep.seeds, "grid": sweep.grid,
               "parameters": sweep.parameters, "vary": list(sweep.vary), "notebooks": list(sweep.notebooks),
               "method": meta.METHOD,
               "groups": {label: list(g) for label, g in groups.items()}, "points": points, "cells": cells}
    if len(cells) == 1:  # a seeds-only sweep: its records at the top level too
        summary.update(next(iter(cells.values())).get("records", {}))
    summary["variance"] = {cell: json.loads(t.to_json(orient="index")) for cell in sweep.cells()
                           if not (t := seedstats.variance_table(summary, cell)).empty}
    return summary


def write_summary(sweep: Sweep, engine: str | None = None, seconds: float | None = None) -> Path:
    """``runs/<sweep>/summary.json`` and ``summary.md`` (with the seed strip plot); returns the .md path.

    ``engine`` and ``seconds`` describe the call that ran points; without them (a rewrite of the
    summary, e.g. by newer code) the previous call's are kept.
    """
    summary = summarise(sweep)
    summary["written"] = time.strftime("%Y-%m-%d %H:%M:%S")
    old = sweep.folder / "summary.json"
    if engine:
        summary["last_call"] = {"engine": engine, "seconds": seconds}
    elif old.exists() and "last_call" in (previous := json.loads(old.read_text())):  # a rewrite keeps it
        summary["last_call"] = previous["last_call"]
    write_atomic(sweep.folder / "summary.json", json.dumps(summary, indent=1, default=str))
    figure = _strip_figure(summary, sweep.folder / "figures")
    path = sweep.folder / "summary.md"
    write_atomic(path, summary_markdown(summary, figure))
    return path


def _strip_figure(summary: dict, folder: Path) -> Path | None:
    from . import plots

    if not any(c.get("points") for c in summary["cells"].values()):
        return None
    import matplotlib.pyplot as plt

    fig = plots.seed_strips(summary, seedstats.claim_keys())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "seeds.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def summary_markdown(summary: dict, figure: Path | None = None) -> str:
    lines = [f"# ovkit sweep `{summary['sweep']}` (profile `{summary['profile']}`)", "",
             f"Written {summary.get('written', '?')}. Seeds {summary['seeds']}"
             + (f"; grid {summary['grid']}" if summary["grid"] else "")
             + (f"; parameters {summary['parameters']}" if summary["parameters"] else "")
             + (f"; notebooks {', '.join(summary['notebooks'])} only" if summary.get("notebooks") else "")
             + "."]
    if call := summary.get("last_call"):
        lines += ["", f"Last call: engine `{call['engine']}`, {call['seconds'] / 60:.1f} min wall time."]
    commits = sorted({p.get("commit") or "?" for p in summary["points"].values() if p["status"] == "ok"})
    if len(commits) > 1:
        lines += ["", f"**Warning:** the finished points ran different code (commits {', '.join(commits)}); "
                  "delete runs/<sweep>/ to run every point with one commit."]
    elif commits:
        lines += ["", f"Code: commit {commits[0]}."]
    lines += ["", "## Points", "", "Each point's seeds: `data` is SEED (the catalogue), the others the "
              "components' own (`ovkit.seeds`).", "",
              "| point | cell | source | seed | component seeds | status | minutes | commit | error |",
              "|---|---|---|---:|---|---|---:|---|---|"]
    for pid, p in summary["points"].items():
        minutes = f"{p['seconds'] / 60:.1f}" if p.get("seconds") else ""
        error = (p.get("error") or "").splitlines()[0] if p.get("error") else ""
        used = " ".join(f"{k} {v}" for k, v in (p.get("component_seeds") or {}).items())
        cells = [pid, p["cell"], p.get("source", WORLD), p["seed"], used, p["status"], minutes,
                 p.get("commit", ""), error]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for cell, entry in summary["cells"].items():
        lines += ["", f"## Cell `{cell}`" if cell != BASE_CELL else "## Across seeds", ""]
        if not entry.get("points"):
            lines.append("No finished point yet.")
            continue
        lines += [f"{len(entry['points'])} seeds: {entry['seeds']}. " + POOLING, "",
                  markdown_table(seedstats.ledger_table(summary, cell)).strip()]
        lines += ["", "Every metric over seeds (n, mean — the pooled estimate where the runs recorded "
                  "intervals —, 95% interval: random-effects where `method` says so, else a t-interval "
                  "over the seeds' values; min, max; τ²):", "",
                  markdown_table(seedstats.metric_table(summary, cell), digits=4).strip()]
    for cell, table in summary.get("variance", {}).items():
        lines += ["", f"## Which source of variation moves each effect (cell `{cell}`)", "",
                  "τ² of each claim's effect between seeds when only that source follows the seed:", "",
                  markdown_table(pd.DataFrame(table).T, digits=4).strip()]
    if figure:
        lines += ["", "## Headline metrics per seed", "", f"![seeds](figures/{figure.name})"]
    return "\n".join(lines) + "\n"
