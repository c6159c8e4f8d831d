"""Resources of a run: CPU seconds and peak memory per notebook (exact, from wait4) and per stage build."""

import json
import resource
import sys
import time

import numpy as np
import pytest
from conftest import write_notebook

from ovkit import resources, runner, store

MB = 2**20

# 00 holds 400 MiB and spins the CPU for ~1 s; 01 does next to nothing. 01 builds a stage that touches
# 300 MiB. The oracles are these sizes and durations, chosen far apart from each other.
HEAVY = """
import time, numpy as np
block = np.ones(400 * 2**20, dtype=np.uint8)
end = time.process_time() + 1.0
while time.process_time() < end:
    pass
"""
STAGE = """
import numpy as np
from ovkit import store
def build(folder):
    block = np.ones(300 * 2**20, dtype=np.uint8)
    (folder / 'x.txt').write_text(str(int(block.sum())))
store.cached('toy', {'size': 300}, build)
"""


@pytest.fixture
def project(kit_home, monkeypatch):
    root = kit_home / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    write_notebook(root / "notebooks" / "00_heavy.ipynb", "SEED: int = 0\nDATA_SOURCE: str = ''", HEAVY)
    write_notebook(root / "notebooks" / "01_stage.ipynb", "SEED: int = 0", STAGE)
    (root / "params" / "tiny.yaml").write_text("SEED: 1\n")
    monkeypatch.setenv("OVKIT_ROOT", str(root))
    return root


@pytest.mark.slow
def test_run_records_cpu_and_peak_memory_per_notebook_and_stage(project, kit_home):
    report = runner.run("tiny")
    out = kit_home / "runs" / "tiny"
    used = json.loads((out / "resources.json").read_text())
    heavy, light = used["notebooks"]["00_heavy.ipynb"], used["notebooks"]["01_stage.ipynb"]
    assert heavy["user_s"] + heavy["sys_s"] >= 1.0  # the busy loop, plus the kernel's start
    assert heavy["peak_rss_gb"] >= 400 * MB / resources.GB
    assert heavy["peak_total_rss_gb"] >= heavy["peak_rss_gb"]
    if sys.platform.startswith("linux"):
        assert heavy["peak_private_gb"] >= 400 * MB / resources.GB
    assert heavy["wall_s"] >= heavy["user_s"] / 2  # 2 cores at most here
    assert light["peak_rss_gb"] >= 300 * MB / resources.GB
    [stage] = used["stages"]
    assert (stage["notebook"], stage["stage"]) == ("01_stage.ipynb", "toy")
    assert stage["peak_rss_gb"] - stage["rss_before_gb"] >= 0.9 * 300 * MB / resources.GB
    assert used["total"]["user_s"] == pytest.approx(heavy["user_s"] + light["user_s"], abs=0.11)
    assert used["total"]["peak_rss_gb"] == max(heavy["peak_rss_gb"], light["peak_rss_gb"])
    text = report.read_text()
    assert "## Resources" in text and "| 00_heavy.ipynb |" in text and "| 01_stage.ipynb | toy |" in text

    runner.run("tiny")  # the stage is cached now: a cache hit costs nothing and is not listed
    assert json.loads((out / "resources.json").read_text())["stages"] == []


def test_measure_records_cpu_and_peak_of_a_block(kit_home):
    with resources.measure("toy", "k") as usage:
        block = np.ones(200 * MB, dtype=np.uint8)
        time.sleep(3 * resources.SAMPLE_S)
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
        del block
    assert usage["peak_rss_gb"] - usage["rss_before_gb"] >= 0.9 * 200 * MB / resources.GB
    # the busy loop, not the test session's CPU; faulting the 200 MB in can take seconds of system
    # time when the kernel compacts memory for the huge pages numpy asks for (seen on a busy machine)
    assert 0.3 <= usage["user_s"] + usage["sys_s"] < 5.0
    [entry] = resources.read_stages(resources.stages_file().parent.parent)
    assert entry == {"notebook": "interactive", "stage": "toy", "key": "k", **usage}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="private memory is read from /proc")
def test_private_memory_counts_arrays_but_not_pages_of_a_mapped_file(kit_home, tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.ones(300 * MB, dtype=np.uint8))
    with resources.measure("mapped") as mapped:
        data = np.load(path, mmap_mode="r")
        assert int(data[:: 4096].sum()) == len(data[:: 4096])  # touch every page: 300 MiB of RSS
        time.sleep(3 * resources.SAMPLE_S)
        del data
    with resources.measure("array") as owned:
        block = np.ones(300 * MB, dtype=np.uint8)
        time.sleep(3 * resources.SAMPLE_S)
        del block
    size = 300 * MB / resources.GB
    assert mapped["peak_rss_gb"] - mapped["rss_before_gb"] >= 0.9 * size  # RSS counts the file's pages,
    assert mapped["peak_private_gb"] < owned["peak_private_gb"] - 0.8 * size  # private memory does not
    assert owned["peak_private_gb"] >= 0.9 * size


@pytest.mark.slow
def test_measure_counts_worker_processes(kit_home):
    import multiprocessing

    with resources.measure("toy") as usage:
        worker = multiprocessing.get_context("spawn").Process(target=_hold_and_spin)
        worker.start()
        worker.join()
    assert usage["user_s"] + usage["sys_s"] >= 0.5  # the worker's CPU, not only this process's
    assert usage["peak_rss_gb"] - usage["rss_before_gb"] >= 0.9 * 150 * MB / resources.GB


def test_sampler_sees_the_process_tree_psutil_sees(kit_home):
    """The /proc reading of the process tree and its RSS against psutil's (the oracle)."""
    import subprocess

    import psutil

    hold = "import time, numpy as np; block = np.ones(100 * 2**20, np.uint8); time.sleep(4)"
    spawn = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}])"
    children = [subprocess.Popen([sys.executable, "-c", code]) for code in (hold, spawn)]
    time.sleep(2)
    try:
        me = psutil.Process()
        tree = [me, *me.children(recursive=True)]
        assert sorted(resources._tree_pids(me.pid)) == sorted(p.pid for p in tree)
        assert len({p.pid for p in tree} - {me.pid, *(c.pid for c in children)}) >= 1  # the grandchild
        rss, private = resources.PeakSampler().sample()
        assert rss == pytest.approx(sum(p.memory_info().rss for p in tree), rel=0.02)
        assert 2 * 100 * MB <= private <= rss
    finally:
        for child in children:
            child.wait()


def _hold_and_spin():
    block = np.ones(150 * MB, dtype=np.uint8)
    end = time.process_time() + 0.5
    while time.process_time() < end:
        pass
    time.sleep(3 * resources.SAMPLE_S)
    del block


def test_failed_build_records_nothing_and_meta_keeps_the_resources(kit_home):
    with pytest.raises(RuntimeError), resources.measure("toy"):
        raise RuntimeError("build failed")
    assert not resources.stages_file().exists()
    artifact = store.cached("toy", {"a": 1}, lambda folder: (folder / "x").write_text("1") and None)
    assert set(artifact.meta["build_resources"]) == {"wall_s", "user_s", "sys_s", "rss_before_gb",
                                                     "peak_rss_gb", "peak_private_gb"}
    assert artifact.meta["build_seconds"] == artifact.meta["build_resources"]["wall_s"]


def test_maxrss_units_follow_the_platform(monkeypatch):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    linux = resources.maxrss_gb(usage)
    monkeypatch.setattr(resources.sys, "platform", "darwin")  # macOS reports bytes, Linux KiB
    assert resources.maxrss_gb(usage) == pytest.approx(linux / 1024)


def test_report_table_lists_notebooks_total_and_stages(tmp_path):
    notebooks = {"00_a.ipynb": {"wall_s": 10.0, "user_s": 15.0, "sys_s": 1.0, "peak_rss_gb": 2.5,
                                "peak_total_rss_gb": 2.75},
                 "01_b.ipynb": {"wall_s": 5.0, "user_s": 4.0, "sys_s": 0.5, "peak_rss_gb": 1.0,
                                "peak_total_rss_gb": 3.0}}
    resources.write(tmp_path, notebooks)
    summary = resources.read(tmp_path)
    assert summary["total"] == {"wall_s": 15.0, "user_s": 19.0, "sys_s": 1.5, "peak_rss_gb": 2.5,
                                "peak_total_rss_gb": 3.0, "peak_private_gb": None,
                                "sys_share": pytest.approx(1.5 / 19.0, abs=1e-3)}
    lines = resources.markdown(summary)
    assert "| **total** | 15.0 | 19.0 | 1.5 | 2.50 | 3.00 | — |" in lines


def test_cli_prints_a_runs_table_or_says_what_is_missing(tmp_path, capsys):
    from ovkit import cli

    assert cli.main(["resources", str(tmp_path)]) == 1
    assert "no resources.json" in capsys.readouterr().err
    used = {"wall_s": 1.0, "user_s": 2.0, "sys_s": 0.1, "peak_rss_gb": 0.5}  # (no tree peak: older runs)
    resources.write(tmp_path, {"00_a.ipynb": used})
    assert cli.main(["resources", str(tmp_path)]) == 0
    assert "| 00_a.ipynb | 1.0 | 2.0 | 0.1 | 0.50 | 0.50 | — |" in capsys.readouterr().out


def _alive(pid: int) -> bool:
    try:
        return resources.psutil.Process(pid).status() != "zombie"
    except resources.psutil.Error:
        return False


@pytest.mark.slow
def test_killing_the_runner_ends_the_notebook_process(project, kit_home):
    import os
    import signal
    import subprocess
    import sys

    write_notebook(project / "notebooks" / "00_heavy.ipynb", "SEED: int = 0\nDATA_SOURCE: str = ''",
                   "import time\nopen('started', 'w').close()\ntime.sleep(300)")
    command = [sys.executable, "-m", "ovkit", "run", "--profile", "tiny", "--only", "00"]
    runner_process = subprocess.Popen(command, env={**os.environ})
    started = project / "notebooks" / "started"
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert started.exists()
    children = [p.pid for p in resources.psutil.Process(runner_process.pid).children(recursive=True)]
    assert len(children) >= 2  # the notebook's process and its kernel
    os.kill(runner_process.pid, signal.SIGKILL)  # no chance to clean up
    runner_process.wait()
    deadline = time.time() + 30
    while any(map(_alive, children)) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(map(_alive, children))
