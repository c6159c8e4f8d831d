import threading

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
    dead = kit_home / "artifacts" / "demo" / ".tmp-0123456789abcdef-999999999-abcdef"
    dead.mkdir()  # a build whose process is gone
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
