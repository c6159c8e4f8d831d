"""Where a run's time and memory go: CPU seconds, wall seconds and peak memory per notebook and stage.

**Per notebook** the runner executes each notebook in a child process and reads that process's
resource usage when it ends (``os.wait4``): user and system CPU seconds of the child *and* of the
Jupyter kernel it started and reaped, and the peak resident set size (RSS) of the largest of them —
the kernel, where the work happens. These are the numbers ``/usr/bin/time -v`` prints.

The runner also samples the child's whole process tree every :data:`SAMPLE_S` seconds: its summed
RSS (``peak_total_rss_gb``: kernel plus any worker processes alive at once) and its summed *private*
memory (``peak_private_gb``: anonymous and shared memory, Linux only). RSS also counts the pages of
memory-mapped files a notebook has read (the catalogue's pixels, the feature maps: several GB at the
default profile), which the OS can drop and read again whenever memory is short; private memory is
what the machine must really hold. A spike shorter than a sample can be missed.

**Per stage build** (:func:`ovkit.store.cached` on a cache miss) the kernel records the CPU seconds of
its whole process during the build (every thread: torch's and faiss's pools included) and of the
worker processes the build started and finished (e.g. the renderers), the wall seconds, the RSS
when the build started and the peaks during it (process and workers, RSS and private memory, sampled
as above). A stage read from the cache costs nothing and is not listed.

Stage records go to ``runs/<run>/resources/stages.jsonl`` (one JSON object per line, written by the
kernels); the runner merges both into ``runs/<run>/resources.json`` and a table in ``report.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import psutil

from .paths import current_run, runs_dir
from .results import write_atomic

# Seconds between RSS samples. A sample of a small process tree costs ~0.2 ms of CPU on Linux (reading
# /proc/<pid>/task/*/children and /proc/<pid>/status of each process in it; psutil took ~0.6 ms).
# Sampling 4 times a second missed most of a 300 MB block that a stage held for a fraction of a
# second (tests/test_resources.py), so not less.
SAMPLE_S = 0.1
# Linux: the process tree and its memory (private memory too) are read from /proc
PROC_STATUS = all(Path(f).is_file() for f in ("/proc/self/status", f"/proc/self/task/{os.getpid()}/children"))
NOTEBOOK_ENV = "OVKIT_NOTEBOOK"  # the runner names the notebook a kernel runs, for its stage records
GB = 2**30


def maxrss_gb(usage: resource.struct_rusage) -> float:
    """``ru_maxrss`` in GiB: Linux reports KiB, macOS bytes."""
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / GB


def child_usage(usage: resource.struct_rusage, wall_s: float, peak_total: int,
                peak_private: int | None = None) -> dict:
    """One notebook's resources from the rusage ``os.wait4`` returned for its child process and the
    sampled peaks of its process tree (bytes: RSS, and private memory — file pages excluded)."""
    return {"wall_s": round(wall_s, 1), "user_s": round(usage.ru_utime, 1),
            "sys_s": round(usage.ru_stime, 1), "peak_rss_gb": round(maxrss_gb(usage), 3),
            "peak_total_rss_gb": round(max(peak_total / GB, maxrss_gb(usage)), 3),
            "peak_private_gb": _gb(peak_private)}


def wait_with_usage(pid: int) -> tuple[int, resource.struct_rusage]:
    """Wait for child ``pid``; its exit code and resource usage (its reaped children included)."""
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), usage
        except InterruptedError:  # pragma: no cover - retried by Python itself since PEP 475
            continue


def _status_bytes(pid: int) -> tuple[int, int] | None:
    """(RSS, private) resident bytes of a process from one read of Linux's ``/proc/<pid>/status``;
    None where there is no such file (other systems, or the process has ended).

    Private = anonymous + shared memory. RSS also counts pages of memory-mapped files (the
    catalogue's pixels, the feature maps), which the OS can drop and read again at any time; the
    private pages it cannot drop without swap.
    """
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        rss, anon, shmem = (int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "RssAnon", "RssShmem"))
        return rss, anon + shmem
    except (OSError, KeyError, ValueError):
        return None


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants. On Linux read from ``/proc/<pid>/task/<tid>/children``: ~20× cheaper
    than psutil's ``children()``, which reads the parent of every process on the machine (the
    sampler runs ten times a second for a whole run); elsewhere psutil."""
    if not PROC_STATUS:
        with contextlib.suppress(psutil.Error):
            return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        return [pid]
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):  # a process may end between listing and reading
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    todo.extend(int(child) for child in (task / "children").read_text().split())
    return pids


class PeakSampler(threading.Thread):
    """Samples a process and its children every ``SAMPLE_S`` seconds until stopped, keeping the largest
    summed RSS (what the machine holds for them) and summed private memory (anonymous + shared
    memory: what it must hold; file pages excluded). Default: this process."""

    def __init__(self, pid: int | None = None):
        super().__init__(daemon=True)
        self.pid = os.getpid() if pid is None else pid
        self.peak, self.peak_private = self.sample()
        self.stopped = threading.Event()

    def sample(self) -> tuple[int, int | None]:
        if not PROC_STATUS:
            rss = 0
            for pid in _tree_pids(self.pid):
                with contextlib.suppress(psutil.Error):  # a process may end between listing and reading
                    rss += psutil.Process(pid).memory_info().rss
            return rss, None
        # a process that ended (or became a zombie) after it was listed has no status: it holds nothing
        statuses = [status for pid in _tree_pids(self.pid) if (status := _status_bytes(pid))]
        return sum(rss for rss, _ in statuses), sum(private for _, private in statuses)

    def run(self):
        while not self.stopped.wait(SAMPLE_S):
            self._keep(*self.sample())

    def _keep(self, rss: int, private: int | None) -> None:
        self.peak = max(self.peak, rss)
        if private is not None and self.peak_private is not None:
            self.peak_private = max(self.peak_private, private)

    def stop(self) -> tuple[int, int | None]:
        """(peak RSS, peak private bytes or None) in bytes."""
        self.stopped.set()
        self.join()
        self._keep(*self.sample())
        return self.peak, self.peak_private


def _gb(n: int | None) -> float | None:
    return None if n is None else round(n / GB, 3)


@contextlib.contextmanager
def measure(stage: str, key: str = ""):
    """Measure a stage build; on success append its record to the current run's ``stages.jsonl``.

    Yields a dict that holds the record once the block has finished (``wall_s``, ``user_s``,
    ``sys_s``, ``rss_before_gb``, ``peak_rss_gb``), for the caller's metadata too.
    """
    record: dict = {}
    before = _cpu()
    sampler = PeakSampler()
    rss_before = sampler.peak
    sampler.start()
    started = time.perf_counter()
    try:
        yield record
    finally:
        peak, private = sampler.stop()
    after = _cpu()
    record.update(wall_s=round(time.perf_counter() - started, 2), user_s=round(after[0] - before[0], 2),
                  sys_s=round(after[1] - before[1], 2), rss_before_gb=round(rss_before / GB, 3),
                  peak_rss_gb=round(peak / GB, 3), peak_private_gb=_gb(private))
    _append(stages_file(), {"notebook": os.environ.get(NOTEBOOK_ENV, "interactive"),
                            "stage": stage, "key": key, **record})


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process and its finished children (e.g. render workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def stages_file(run: str | None = None) -> Path:
    return runs_dir() / (run or current_run()) / "resources" / "stages.jsonl"


def _append(path: Path, entry: dict) -> None:
    """One line per record; lines are short, so an append from another kernel never interleaves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def read_stages(folder: Path) -> list[dict]:
    """The stage records of a run folder (a half-written last line, from a killed kernel, is skipped)."""
    path = folder / "resources" / "stages.jsonl"
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            entries.append(json.loads(line))
    return entries


def summarise(folder: Path, notebooks: dict) -> dict:
    """``resources.json``'s content: per notebook, per stage build, the totals and the machine."""
    total = {k: round(sum(n[k] for n in notebooks.values()), 1) for k in ("wall_s", "user_s", "sys_s")}
    for key in ("peak_rss_gb", "peak_total_rss_gb"):
        total[key] = max((n.get(key, n["peak_rss_gb"]) for n in notebooks.values()), default=0.0)
    private = [n.get("peak_private_gb") for n in notebooks.values()]
    total["peak_private_gb"] = max(private) if private and None not in private else None
    total["sys_share"] = round(total["sys_s"] / total["user_s"], 3) if total["user_s"] else None
    machine = {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / GB, 1),
               "platform": sys.platform}
    return {"notebooks": notebooks, "stages": read_stages(folder), "total": total, "machine": machine}


def write(folder: Path, notebooks: dict) -> Path:
    """Write ``resources.json`` into a run folder; returns its path."""
    path = folder / "resources.json"
    write_atomic(path, json.dumps(summarise(folder, notebooks), indent=1, sort_keys=True))
    return path


def read(folder: Path) -> dict:
    path = folder / "resources.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(summary: dict) -> list[str]:
    """Report lines: a per-notebook table (wall, CPU, peak RSS) and the stage builds beneath it."""
    if not summary.get("notebooks"):
        return []
    lines = ["| notebook | wall s | user s | system s | peak RSS GiB | peak, all processes GiB | "
             "peak private GiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = sorted(summary["notebooks"].items()) + [("**total**", summary["total"])]
    lines += [f"| {name} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | {r['peak_rss_gb']:.2f} "
              f"| {r.get('peak_total_rss_gb', r['peak_rss_gb']):.2f} | {_cell(r.get('peak_private_gb'))} |"
              for name, r in rows]
    if summary.get("stages"):
        lines += ["", "Stage builds (cache misses; peaks sampled every "
                  f"{SAMPLE_S * 1000:.0f} ms):", "",
                  "| notebook | stage | wall s | user s | system s | RSS before GiB | peak RSS GiB | "
                  "peak private GiB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['notebook']} | {s['stage']} | {s['wall_s']:.1f} | {s['user_s']:.1f} | "
                  f"{s['sys_s']:.1f} | {s['rss_before_gb']:.2f} | {s['peak_rss_gb']:.2f} | "
                  f"{_cell(s.get('peak_private_gb'))} |" for s in summary["stages"]]
    return lines
