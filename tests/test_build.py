"""Render workers never outlive a killed build."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import sys, time
from ovkit.data import build, render, sh3d

sh3d.load_mesh = lambda model: time.sleep(120)  # every model renders 'forever'
print("ready", flush=True)
build.render_models(["a", "b", "c", "d"], 4, 1, 1, render.RenderConfig(), 0, workers=2)
"""


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and not fields.get("State", "").startswith("Z"):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its exit status waits to be collected


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc (Linux)")
def test_killed_build_leaves_no_render_worker(kit_home):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 30
    while len(workers := _children(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(workers) >= 2, "the build did not start its render workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    survivors = [w for w in workers if _alive(w)]
    for w in survivors:  # don't leave them behind even when the test fails
        os.kill(w, signal.SIGKILL)
    assert not survivors, f"render workers {survivors} outlived their killed build"


def test_pixel_writer_writes_what_np_save_of_the_concatenation_writes(tmp_path):
    import numpy as np

    from ovkit.data.build import PixelWriter

    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, size=(n, 8, 6, 3), dtype=np.uint8) for n in (3, 1, 5)]
    with PixelWriter(tmp_path / "pixels.npy") as writer:
        kept = [writer.add({"images": p, "facts": [i]}) for i, p in enumerate(parts)]
    assert kept == [{"facts": [0]}, {"facts": [1]}, {"facts": [2]}]  # the images are not kept in memory
    np.save(tmp_path / "expected.npy", np.concatenate(parts))
    assert (tmp_path / "pixels.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()
    assert not (tmp_path / "pixels.npy.raw").exists()

    with pytest.raises(RuntimeError), PixelWriter(tmp_path / "failed.npy") as writer:
        writer.add({"images": parts[0]})
        raise RuntimeError("the build failed")
    assert not (tmp_path / "failed.npy").exists() and not (tmp_path / "failed.npy.raw").exists()
    with pytest.raises(ValueError, match="differs"), PixelWriter(tmp_path / "mixed.npy") as writer:
        writer.add({"images": parts[0]})
        writer.add({"images": np.zeros((1, 4, 4, 3), np.uint8)})
