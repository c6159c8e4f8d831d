import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from ovkit import store


def _writer(calls, content="x"):
    def build(folder):
        calls.append(folder)
        (folder / "out.txt").write_text(content)
        return {"n": 1}
    return build


def test_miss_builds_then_hit_loads(kit_home):
    calls = []
    a = store.cached("demo", {"k": 1}, _writer(calls))
    b = store.cached("demo", {"k": 1}, _writer(calls))
    assert len(calls) == 1 and a.key == b.key and a.fresh and not b.fresh
    assert (a / "out.txt").read_text() == "x" and a.meta["n"] == 1 and a.meta["params"] == {"k": 1}


def test_parameter_or_version_change_gives_a_new_artifact(kit_home):
    calls = []
    a = store.cached("demo", {"k": 1}, _writer(calls))
    b = store.cached("demo", {"k": 2}, _writer(calls))
    c = store.cached("demo", {"k": 1}, _writer(calls), version=2)
    assert len({a.key, b.key, c.key}) == 3 and len(calls) == 3


def test_upstream_change_rebuilds_downstream(kit_home):
    calls = []
    up1 = store.cached("up", {"v": 1}, _writer([]))
    up2 = store.cached("up", {"v": 2}, _writer([]))
    d1 = store.cached("down", {}, _writer(calls), upstream=[up1])
    d2 = store.cached("down", {}, _writer(calls), upstream=[up2])
    assert d1.key != d2.key and len(calls) == 2 and d2.meta["upstream"] == {"up": up2.key}


def test_failed_build_leaves_no_artifact_and_keeps_the_old_one(kit_home):
    good = store.cached("demo", {"k": 1}, _writer([], "good"))

    def broken(folder):
        (folder / "out.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.cached("demo", {"k": 1}, broken, rebuild=True)
    assert (good / "out.txt").read_text() == "good"  # nothing already built is lost
    with pytest.raises(RuntimeError):
        store.cached("demo", {"k": 9}, broken)
    assert store.lookup("demo", {"k": 9}) is None
    left = [p.name for p in (kit_home / "artifacts" / "demo").iterdir() if not p.name.startswith(".lock-")]
    assert left == [good.key]


def test_folder_without_meta_is_not_read(kit_home):
    key = store.stage_key("demo", {"k": 5})
    partial = kit_home / "artifacts" / "demo" / key
    partial.mkdir(parents=True)
    (partial / "out.txt").write_text("partial")
    calls = []
    art = store.cached("demo", {"k": 5}, _writer(calls, "full"))
    assert len(calls) == 1 and (art / "out.txt").read_text() == "full"


def test_key_is_stable_and_order_independent():
    assert store.stage_key("s", {"a": 1, "b": [1, 2]}) == store.stage_key("s", {"b": (1, 2), "a": 1})


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:3]),  # truncated
    lambda p: p.write_bytes(p.read_bytes()[::-1]),  # same size, other bytes
    lambda p: p.unlink(),
])
def test_damaged_file_is_detected_and_the_stage_rebuilt(kit_home, capsys, damage):
    calls = []
    first = store.cached("demo", {"k": 1}, _writer(calls, "complete"))
    assert first.meta["files"]["out.txt"]["bytes"] == len("complete")
    damage(first / "out.txt")
    store._VERIFIED.clear()  # a new process: nothing verified yet
    again = store.cached("demo", {"k": 1}, _writer(calls, "complete"))
    assert len(calls) == 2 and again.fresh and (again / "out.txt").read_text() == "complete"
    out = capsys.readouterr().out
    assert "the cached demo stage" in out and "is damaged" in out and "rebuilding it" in out
    assert store.lookup("demo", {"k": 1}) is not None  # the rebuilt one verifies


def test_unreadable_meta_counts_as_damaged(kit_home):
    calls = []
    first = store.cached("demo", {"k": 1}, _writer(calls))
    (first / "meta.json").write_text('{"stage": "de')
    assert store.lookup("demo", {"k": 1}) is None
    store.cached("demo", {"k": 1}, _writer(calls))
    assert len(calls) == 2


def test_clean_partial_keeps_a_running_build(kit_home):
    started, release = threading.Event(), threading.Event()

    def slow(folder):
        (folder / "out.txt").write_text("x")
        started.set()
        release.wait(10)

    builder = threading.Thread(target=store.cached, args=("demo", {"k": 1}, slow))
    builder.start()
    started.wait(10)
    dead = kit_home / "artifacts" / "demo" / f".tmp-0123456789abcdef-{store._host()}-999999999-abcdef"
    dead.mkdir()  # a build on this host whose process is gone
    assert store.clean_partial() == 1 and not dead.exists()
    release.set()
    builder.join()
    assert store.lookup("demo", {"k": 1}) is not None


def test_a_fresh_build_is_hashed_once(kit_home, monkeypatch):
    calls = []
    real = store._file_hash
    monkeypatch.setattr(store, "_file_hash", lambda path: calls.append(path) or real(path))
    store.cached("demo", {"k": 7}, _writer([], "payload"))
    assert len(calls) == 1  # recorded at build time; the read after the rename trusts that hash
    store.cached("demo", {"k": 7}, _writer([], "payload"))
    assert len(calls) == 1  # and this process has checked it already


def _rewrite_meta(artifact, **changes):
    meta = json.loads((artifact / "meta.json").read_text())
    meta.update(changes)
    for name in [k for k, v in changes.items() if v is None]:
        del meta[name]
    (artifact / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes,problem", [
    ({"files": None}, "records no files"),
    ({"files": []}, "records no files"),
    ({"files": {"out.txt": {"bytes": 1}}}, "bad record for file 'out.txt'"),
    ({"files": {"../../x": {"bytes": 1, "blake2b": "00"}}}, "bad record for file '../../x'"),
    ({"key": "0123456789abcdef"}, "names stage 'demo' key '0123456789abcdef', not its folder's"),
    ({"key": 7}, "names stage 'demo' key 7"),
    ({"stage": "other"}, "names stage 'other'"),
])
def test_meta_that_is_not_the_folders_own_counts_as_damaged(kit_home, capsys, changes, problem):
    calls = []
    first = store.cached("demo", {"k": 1}, _writer(calls))
    _rewrite_meta(first, **changes)
    again = store.cached("demo", {"k": 1}, _writer(calls))
    assert len(calls) == 2 and again.fresh
    out = capsys.readouterr().out
    assert "is damaged" in out and problem in out and "rebuilding it" in out


def test_an_artifact_copied_under_another_key_is_not_read(kit_home):
    calls = []
    one = store.cached("demo", {"k": 1}, _writer(calls, "one"))
    two_key = store.stage_key("demo", {"k": 2})
    shutil.copytree(one.path, one.path.parent / two_key)  # its files verify, but it is k=1's output
    two = store.cached("demo", {"k": 2}, _writer(calls, "two"))
    assert len(calls) == 2 and (two / "out.txt").read_text() == "two"


def test_meta_that_is_not_an_object_counts_as_damaged(kit_home):
    first = store.cached("demo", {"k": 1}, _writer([]))
    (first / "meta.json").write_text("[1, 2]")
    assert store.lookup("demo", {"k": 1}) is None


def _build_folder(kit_home, host, pid, age_s=0.0, fresh_file=False):
    folder = kit_home / "artifacts" / "demo" / f".tmp-0123456789abcdef-{host}-{pid}-abcdef"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "part.bin").write_bytes(b"x")
    then = time.time() - age_s
    for path in (folder / "sub" / "part.bin", folder / "sub", folder):
        os.utime(path, (then, then))
    if fresh_file:  # a builder elsewhere is still writing
        (folder / "sub" / "part.bin").write_bytes(b"xy")
    return folder


def test_clean_partial_asks_for_a_pid_only_on_its_own_host(kit_home):
    """On a shared cache a PID from another host says nothing: its folders go only when stale."""
    day = store.FOREIGN_BUILD_AGE_S
    here_dead = _build_folder(kit_home, store._host(), 999999999)
    here_alive_old = _build_folder(kit_home, store._host(), os.getpid(), age_s=2 * day)
    there_fresh = _build_folder(kit_home, "other-host.example", 999999999, age_s=60)
    there_writing = _build_folder(kit_home, "other-host.example", 999999998, age_s=2 * day, fresh_file=True)
    there_stale = _build_folder(kit_home, "other-host.example", os.getpid(), age_s=day + 60)
    assert store.clean_partial() == 2
    assert not here_dead.exists() and not there_stale.exists()
    assert here_alive_old.exists() and there_fresh.exists() and there_writing.exists()


def test_clean_partial_takes_a_folder_without_a_host_by_age(kit_home):
    old_name = kit_home / "artifacts" / "demo" / ".tmp-0123456789abcdef-999999999-abcdef"
    old_name.mkdir(parents=True)  # named before hosts were recorded: its PID may be another host's
    assert store.clean_partial() == 0 and old_name.exists()
    assert store.clean_partial(max_age_s=-1) == 1 and not old_name.exists()


def _mapped_mb(array) -> float:
    """Resident MB of the mapping that holds ``array`` (Linux /proc/self/smaps)."""
    address = array.__array_interface__["data"][0]
    lines = open("/proc/self/smaps").read().splitlines()
    for i, line in enumerate(lines):
        header = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
        if header and int(header[1], 16) <= address < int(header[2], 16):
            rss = next(entry for entry in lines[i + 1 :] if entry.startswith("Rss:"))
            return int(rss.split()[1]) / 1024
    raise AssertionError("mapping not found")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_release_pages_unmaps_read_and_written_pages_and_keeps_the_data(tmp_path):
    import numpy as np

    written = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=(32 << 20,))
    written[:] = 7
    assert _mapped_mb(written) > 30
    store.release_pages(written[5:])  # a view of the map releases the whole map
    assert _mapped_mb(written) < 1
    del written
    read = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert int(read.sum(dtype=np.int64)) == 7 * (32 << 20)  # the written bytes reached the file
    assert _mapped_mb(read) > 30
    store.release_pages(read, np.zeros(3), None)  # arrays that are not maps are ignored
    assert _mapped_mb(read) < 1 and read[-1] == 7
    copy = np.load(tmp_path / "a.npy", mmap_mode="c")
    copy[:] = 9
    store.release_pages(copy)  # a copy-on-write map would lose its edits: left alone
    assert copy[0] == 9 and _mapped_mb(copy) > 30


HEAP_AFTER_FREE = """
import numpy as np
from ovkit import store
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
blocks = [np.ones(1 << 20, np.uint8) for _ in range(300)]  # 300 MB of heap blocks (below the mmap threshold)
del blocks
freed = rss_mb()
assert store.trim_heap()
print(freed, rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_trim_heap_returns_what_the_kernels_malloc_settings_keep():
    from ovkit import runner

    env = {**os.environ, "GLIBC_TUNABLES": runner.MALLOC_TUNABLES, "NUMPY_MADVISE_HUGEPAGE": "0"}
    freed, trimmed = map(int, subprocess.run([sys.executable, "-c", HEAP_AFTER_FREE], env=env, check=True,
                                             capture_output=True, text=True).stdout.split())
    assert freed - trimmed > 250  # MB: the freed blocks stayed in the process until the trim
