"""``ovkit run``: execute the notebooks of a profile with papermill, in order.

Parameters come from ``params/<profile>.yaml`` plus ``-p key=value`` overrides; each notebook
receives the ones its ``parameters`` cell declares. Executed copies go to
``runs/<profile>/notebooks/``, quality metrics are merged into ``runs/<profile>/metrics.json``,
timings (each notebook's wall time and the timing metrics) into ``runs/<profile>/timings.json``, CPU
seconds and peak memory per notebook and stage build into ``runs/<profile>/resources.json``
(:mod:`ovkit.resources`; each notebook runs in a child process of its own to measure them), and a
``runs/<profile>/report.md`` summarises the run. Stages are cached, so a re-run after a failure
resumes where the work stopped.

A full run (no ``--only``, no ``--from``) starts the profile's recorded results afresh: before the
first notebook it removes ``runs/<profile>/metrics/``, ``tables/``, ``figures/``, ``resources/``,
``timings.json`` and ``resources.json`` (the executed notebooks and the stage cache in
``artifacts/`` stay). A partial run keeps them, so its numbers sit next to older ones; every metrics
file records its provenance (the run's parameter hash and git commit, passed to the kernels as
``OVKIT_PARAMS_HASH`` and ``OVKIT_COMMIT``) and the report warns when they differ.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import resources
from .config import PARAMETERS, exit_with_parent, matches_type, progress, settings, with_overrides
from .data import folder, sh3d
from .paths import project_root, runs_dir
from .report import write
from .results import COMMIT_ENV, PARAMS_ENV, git_commit, load_metrics, read_timings

KERNEL = "python3"


class RunError(RuntimeError):
    """A run could not start or a notebook failed; the message says which and why."""


@dataclass
class Notebook:
    number: str  # "00"
    path: Path
    parameters: dict  # name -> {"default": ..., "help": ...}


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def params_dir() -> Path:
    return project_root() / "params"


def discover(folder: Path | None = None) -> list[Notebook]:
    """The ``NN_*.ipynb`` notebooks in order, with the names their parameters cell declares."""
    import papermill

    folder = folder or notebooks_dir()
    found = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        declared = papermill.inspect_notebook(str(path))
        found.append(Notebook(path.name[:2], path, declared))
    if not found:
        raise RunError(f"no notebooks (NN_name.ipynb) in {folder}")
    return found


def load_profile(profile: str) -> dict:
    """The parameter set of a profile, ``params/<profile>.yaml`` (a flat name → value mapping)."""
    path = params_dir() / f"{profile}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in params_dir().glob("*.yaml"))
        raise RunError(f"unknown profile {profile!r}: no {path}. Profiles: {', '.join(names)}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise RunError(f"{path} must be a mapping of parameter names to values")
    return values


def parse_overrides(pairs: list[str]) -> dict:
    """``["N_MODELS=40", "RENDER={occlusion_prob: 0}"]`` → dict, values read as YAML."""
    values = {}
    for pair in pairs:
        if "=" not in pair:
            raise RunError(f"-p expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        values[key.strip()] = yaml.safe_load(raw)
    return values


def validate_parameters(values: dict, notebooks: list[Notebook], origin: str) -> None:
    """Every name must be declared by at least one notebook; otherwise list the valid names."""
    valid = sorted({name for nb in notebooks for name in nb.parameters})
    unknown = [k for k in values if k not in valid]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RunError(
            f"unknown parameter(s) in {origin}: {', '.join(hints)}.\nValid parameters: {', '.join(valid)}"
        )


_ANNOTATIONS = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list}


def merge_overrides(values: dict, extra: dict) -> tuple[dict, list[str]]:
    """Profile values updated by ``-p`` overrides; a dict override merges into the profile's dict.

    ``-p 'VRQ={levels: [16, 16]}'`` keeps the profile's other VRQ settings (e.g. ``opq_size``).
    Returns the merged values and one line per merged dict, saying what it kept.
    """
    merged, notes = dict(values), []
    for name, value in extra.items():
        base = values.get(name)
        if isinstance(base, dict) and isinstance(value, dict):
            kept = {k: v for k, v in base.items() if k not in value}
            merged[name] = {**base, **value}
            if kept:
                notes.append(f"{name}: -p {sorted(value)} merged into the profile's {name}, "
                             f"which keeps {kept}")
        else:
            merged[name] = value
    return merged, notes


def check_values(values: dict, notebooks: list[Notebook]) -> None:
    """Every value must fit its parameters-cell annotation, and every settings dict its dataclass.

    All problems are reported at once, naming the parameter and the expected type, before any
    notebook runs (so a typo in ``GEN`` does not surface after an hour of notebooks 00–03).
    """
    declared = {name: spec for nb in notebooks for name, spec in nb.parameters.items()}
    problems = []
    for name, value in values.items():
        expected = declared[name].get("inferred_type_name", "None")
        hint = _ANNOTATIONS.get(expected)
        if hint is not None and not matches_type(value, hint):
            problems.append(f"{name}={value!r} ({type(value).__name__}) should be {expected}, "
                            f"like the notebooks' default {declared[name].get('default')}")
        else:
            problems += value_problems(name, value)
    if problems:
        raise RunError("bad parameter value(s):\n- " + "\n- ".join(problems))


def value_problems(name: str, value) -> list[str]:
    """What is wrong with one value of the right type: a settings dict, a range, pruning policies."""
    registered = PARAMETERS.get(name)
    if registered and registered.settings and isinstance(value, dict):
        try:
            settings(name, value)
        except (ValueError, TypeError) as err:
            return [f"{name}: {err}"]
    if registered and registered.check:  # values a notebook would take but turn into nonsense
        with contextlib.suppress(TypeError):  # a value of another type fails the test
            if registered.check(value):
                return []
        return [f"{name}={value!r} must be {registered.wanted}"]
    if name == "PRUNE_GRID" and isinstance(value, list):
        return [p for i, entry in enumerate(value) for p in _policy_problems(f"{name}[{i}]", entry)]
    if name == "PRUNE_POLICY" and isinstance(value, str) and value:
        try:
            return _policy_problems(name, json.loads(value))
        except json.JSONDecodeError as err:
            return [f"{name}={value!r} is not JSON ({err}): write it like '{{\"delta\": 2.0}}'"]
    return []


def _policy_problems(name: str, entry) -> list[str]:
    """A pruning policy's settings must name :class:`ovkit.prune.Policy` fields with valid values."""
    from .prune import Policy  # (imports torch: only when there is a policy to check)

    if not isinstance(entry, dict):
        return [f"{name}={entry!r} should be a mapping of pruning settings, e.g. {{delta: 2.0}}"]
    try:
        with_overrides(Policy, entry, name)
    except (ValueError, TypeError) as err:
        return [f"{name}={entry!r}: {err}"]
    return []


def check_data_source(values: dict) -> None:
    """``DATA_SOURCE`` is checked before notebook 00: a dataset folder fully (every image opened);
    without one, an ``OVKIT_SH3D`` the catalogue would read."""
    source = values.get("DATA_SOURCE") or ""
    try:
        if folder.is_folder_dataset(source):
            folder.validate(Path(source), open_images=True)
        elif source:
            sh3d.resolve_sh3f(source, fetch=False)
    except sh3d.DataError as err:
        raise RunError(f"DATA_SOURCE={source}: {err}") from err
    if not source and (env := os.environ.get(sh3d.ENV_SOURCE)):
        try:
            sh3d.resolve_sh3f(env, fetch=False)
        except sh3d.DataError as err:
            raise RunError(f"{sh3d.ENV_SOURCE}={env}: {err}") from err


def select(notebooks: list[Notebook], only: list[str] | None, start: str | None) -> list[Notebook]:
    numbers = [nb.number for nb in notebooks]
    for n in (only or []) + ([start] if start else []):
        if n not in numbers:
            raise RunError(f"no notebook {n!r}; notebooks: {', '.join(numbers)}")
    if only:
        return [nb for nb in notebooks if nb.number in only]
    if start:
        return [nb for nb in notebooks if nb.number >= start]
    return notebooks


def check_kernel() -> None:
    """Make sure kernel ``python3`` runs this environment's Python (not some other install)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel as err:
        raise RunError(f"no Jupyter kernel {KERNEL!r}: run 'make setup'") from err
    exe = spec.argv[0]
    if exe not in ("python", "python3", "{python}") and Path(exe).resolve() != Path(sys.executable).resolve():
        raise RunError(
            f"Jupyter kernel {KERNEL!r} runs {exe}, not this environment's {sys.executable}.\n"
            f"Fix: {sys.executable} -m ipykernel install --sys-prefix --name {KERNEL} "
            f"(and remove the user-level kernel that shadows it: jupyter kernelspec list)"
        )


def params_hash(values: dict) -> str:
    """A stable 12-hex-digit hash of a parameter set (sorted JSON, so key order does not matter)."""
    text = json.dumps(values, sort_keys=True, default=str)  # default: YAML dates and the like
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def clear_results(out_dir: Path) -> None:
    """Remove a profile's recorded metrics, tables, figures, timings and resources (not notebooks or
    artifacts)."""
    for name in ("metrics", "tables", "figures", "resources"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for name in ("timings.json", "resources.json"):
        (out_dir / name).unlink(missing_ok=True)


def _write_timings(out_dir: Path, **parts) -> None:
    timings = {**read_timings(out_dir), **parts}
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=1, sort_keys=True))


# glibc's allocator hands every block over 32 MB (a batch of activations in the backbone: 64×32×64×64
# floats) to a fresh mmap and unmaps it when freed, so each batch faults its pages in again; freed
# memory at the heap's top is also returned past a small threshold. Raising both keeps the kernel's
# working memory mapped (arrays of 256 MB and more, e.g. whole-catalogue copies, still get their own
# map and go back to the OS when freed).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=4294967296"


# How long (in spins of a busy loop, a few microseconds) an OpenMP thread that finished its share of a
# parallel region waits for the next one before it sleeps on a futex.
OMP_SPIN_COUNT = "10000"


def kernel_defaults() -> dict:
    """Environment defaults for the kernels (each kept when the user set the variable).

    ``GOMP_SPINCOUNT`` (:data:`OMP_SPIN_COUNT`, unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is
    set): libgomp's default lets a waiting thread spin 300,000 times before it sleeps; with torch's
    and faiss's many small parallel regions that spinning counts as CPU time without doing work
    (training an alignment head on 2 threads: 11.5 s of user CPU spinning, 9.1 s passive, in the same
    8 s of wall time). Not spinning at all (``OMP_WAIT_POLICY=PASSIVE``) makes every region a futex
    sleep and wake-up: 150 default-profile head steps took 1.4 s of system time, 64,700 context
    switches and 16.1 s wall passive against 0.35 s, 3,400 and 13.0 s with a short spin, at the same
    user time (23.0 s). ``GLIBC_TUNABLES`` (:data:`MALLOC_TUNABLES`): the frozen backbone's pass over
    1,024 images took 5.5 s of system time in page faults (3.0 M) with glibc's defaults and 0.1 s
    (14 k) with these, at the same user time and identical maps. ``NUMPY_MADVISE_HUGEPAGE=0``:
    numpy asks for 2 MB pages for every array of 4 MB or more, and the kernel zeroes each whole
    2 MB page on first touch; notebook 03 at the default profile spent 5.2-5.8 s of system time
    with them and 3.0-3.5 s without (three alternating pairs, the same user time, and no change in
    head training). All are read when a process starts, so they are set for the kernels here (and
    the render workers they fork). None of them changes a computed number.
    """
    user_set = os.environ.get("OMP_WAIT_POLICY") or os.environ.get("GOMP_SPINCOUNT")
    omp = {} if user_set else {"GOMP_SPINCOUNT": OMP_SPIN_COUNT}
    return {**omp, "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES") or MALLOC_TUNABLES,
            "NUMPY_MADVISE_HUGEPAGE": os.environ.get("NUMPY_MADVISE_HUGEPAGE") or "0"}


@contextlib.contextmanager
def kernel_env(values: dict):
    """Set the variables the kernels inherit (so record() writes to this run), restoring them after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def prepare(profile: str, extra: dict | None = None, origin: str = "-p",
            notebooks: list[Notebook] | None = None, check_data: bool = True, verbose: bool = True) -> dict:
    """The profile's parameters merged with ``extra`` overrides, every name and value checked.

    Unknown names, bad values and (with ``check_data``) a bad data source — ``DATA_SOURCE``, or
    ``OVKIT_SH3D`` when it is set — are reported together, before anything runs. Relative paths in
    them are resolved against the current directory here, once (the kernels run in ``notebooks/``).
    ``verbose`` prints what each dict override kept from the profile.
    """
    notebooks = notebooks or discover()
    values = load_profile(profile)
    errors = []
    for given, where in ((values, f"params/{profile}.yaml"), (extra or {}, origin)):
        try:
            validate_parameters(given, notebooks, where)
        except RunError as err:
            errors.append(str(err))
    values, notes = merge_overrides(values, extra or {})
    for note in notes if verbose else ():
        print(note)
    declared = {name for nb in notebooks for name in nb.parameters}
    values = resolve_sources({k: v for k, v in values.items() if k in declared})
    checks = [lambda: check_values(values, notebooks)]
    if check_data:
        checks.append(lambda: check_data_source(values))
    for check in checks:
        try:
            check()
        except RunError as err:
            errors.append(str(err))
    if errors:
        raise RunError("\n".join(errors))
    return values


def resolve_sources(values: dict) -> dict:
    """``DATA_SOURCE`` and ``OVKIT_SH3D`` as absolute paths when they are relative ones that exist
    here: the shell's directory is what a user means, but a kernel reads them from ``notebooks/``."""
    def absolute(path):
        relative = isinstance(path, str) and path and not Path(path).expanduser().is_absolute()
        return str(Path(path).resolve()) if relative and Path(path).exists() else path

    if values.get("DATA_SOURCE"):
        values = {**values, "DATA_SOURCE": absolute(values["DATA_SOURCE"])}
    if os.environ.get(sh3d.ENV_SOURCE):
        os.environ[sh3d.ENV_SOURCE] = absolute(os.environ[sh3d.ENV_SOURCE])  # the kernels inherit it
    return values


def run(profile: str, only: list[str] | None = None, start: str | None = None,
        overrides: list[str] | dict | None = None, name: str | None = None) -> Path:
    """Run the profile's notebooks; returns the path of the report.

    Args:
        overrides: ``-p`` strings (``["N_MODELS=40"]``) or an already parsed dict.
        name: the run folder under ``runs/`` (default: the profile), e.g. ``seeds-default/seed-1``.
    """
    notebooks = discover()
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides or [])
    values = prepare(profile, extra, notebooks=notebooks)
    chosen = select(notebooks, only, start)
    check_kernel()

    name = name or profile
    out_dir = runs_dir() / name
    if not only and not start:  # a full run: no numbers of an earlier run may mix into this one
        clear_results(out_dir)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (out_dir / "params.json").write_text(json.dumps(values, indent=1, sort_keys=True, default=str))
    env = {"OVKIT_PROFILE": profile, "OVKIT_RUN": name, PARAMS_ENV: params_hash(values),
           COMMIT_ENV: git_commit(), **kernel_defaults()}
    with kernel_env(env):
        failure = _execute(chosen, values, out_dir, name)
    quality = load_metrics(name, "quality")
    (out_dir / "metrics.json").write_text(json.dumps(quality, indent=1, sort_keys=True))
    _write_timings(out_dir, metrics=load_metrics(name, "timing"))
    report = write(profile, values, failure, run=name)
    if failure:
        raise RunError(failure)
    return report


def _execute(chosen: list[Notebook], values: dict, out_dir: Path, profile: str) -> str | None:
    """Execute the notebooks in order, recording timings and resources; returns the failure, if any."""
    timings = read_timings(out_dir)["notebooks"]
    usage = resources.read(out_dir).get("notebooks", {})
    failure = None
    for nb in progress(chosen, desc=f"ovkit run {profile}", unit="notebook"):
        params = {k: v for k, v in values.items() if k in nb.parameters}
        output = out_dir / "notebooks" / nb.path.name
        failure, usage[nb.path.name] = _execute_in_child(nb, params, output)
        timings[nb.path.name] = {"seconds": usage[nb.path.name]["wall_s"],
                                 "status": "failed" if failure else "ok"}
        _write_timings(out_dir, notebooks=timings)
        resources.write(out_dir, usage)
        if failure:
            break
    return failure


def _execute_in_child(nb: Notebook, params: dict, output: Path) -> tuple[str | None, dict]:
    """Run one notebook with papermill in a child process; (failure message or None, its resources).

    A child of its own gives each notebook exact CPU seconds and peak RSS (its kernel's included):
    ``os.wait4`` reports them when it ends (:mod:`ovkit.resources`).
    """
    with tempfile.TemporaryDirectory(prefix="ovkit-run-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"notebook": str(nb.path), "output": str(output), "parameters": params,
                                   "result": str(result), "parent": os.getpid()}, default=str))
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "ovkit.runner", str(job)],
                                 env={**os.environ, resources.NOTEBOOK_ENV: nb.path.name})
        sampler = resources.PeakSampler(child.pid)
        sampler.start()
        code, rusage = resources.wait_with_usage(child.pid)
        child.returncode = code  # reaped by wait4: Popen must not wait for it again
        used = resources.child_usage(rusage, time.perf_counter() - started, *sampler.stop())
        failure = json.loads(result.read_text())["failure"] if result.exists() else None
    if failure is None and code != 0:
        failure = (f"notebook {nb.path.name}: the process running it ended with exit code {code} "
                   f"(killed for memory, or interrupted?); its partial copy is {output}")
    return failure, used


def _papermill_job(job_file: str) -> None:
    """The child's side of :func:`_execute_in_child`: run the notebook, write the failure (or None)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    job = json.loads(Path(job_file).read_text())
    exit_with_parent(job["parent"])  # a killed run leaves no notebook running on (its kernel follows it)
    output, failure = job["output"], None
    try:
        papermill.execute_notebook(job["notebook"], output, parameters=job["parameters"],
                                   kernel_name=KERNEL, cwd=str(Path(job["notebook"]).parent),
                                   progress_bar=False, log_output=False)
    except PapermillExecutionError as err:
        failure = (
            f"notebook {Path(job['notebook']).name} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"The executed copy with the traceback is {output}. Fix the cause and run again: "
            f"finished stages are cached, so the run resumes."
        )
    Path(job["result"]).write_text(json.dumps({"failure": failure}))


if __name__ == "__main__":
    _papermill_job(sys.argv[1])
