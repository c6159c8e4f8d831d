"""Settings from notebook parameters (type checks, unknown names) and the shared process helpers."""

import dataclasses
import os
from typing import Literal

import pytest

from ovkit import config


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int = 10
    lr: float = 1e-3
    levels: tuple[int, ...] = (8, 8)
    mode: Literal["a", "b"] = "a"
    name: str | None = None

    def validate(self):
        if self.steps < 1:
            raise ValueError(f"X steps must be >= 1, got {self.steps}")


def test_overrides_replace_fields_and_lists_become_tuples():
    s = config.with_overrides(Settings, {"steps": 3, "lr": 1, "levels": [4, 4, 4], "name": None}, "X")
    assert s == Settings(steps=3, lr=1, levels=(4, 4, 4)) and isinstance(s.levels, tuple)
    assert config.with_overrides(Settings, None, "X") == Settings()


@pytest.mark.parametrize("overrides, message", [
    ({"stepz": 3}, r"unknown X setting\(s\) \['stepz'\]; valid names: steps, lr, levels, mode, name"),
    ({"steps": "fast"}, r"X steps='fast' is not int"),
    ({"steps": True}, r"X steps=True is not int"),  # a bool is no int here
    ({"levels": [4, "x"]}, r"X levels=\[4, 'x'\] is not"),
    ({"mode": "c"}, r"X mode='c' is not"),
    ({"steps": 0}, r"X steps must be >= 1"),  # the settings' own validate()
    ([1, 2], r"X must be a mapping of setting names to values"),
])
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        config.with_overrides(Settings, overrides, "X")


@pytest.mark.parametrize("value, hint, fits", [
    (3, float, True), (3.0, int, False), (False, float, False), ([1, 2], tuple[int, int], True),
    ([1, 2, 3], tuple[int, int], False), ([1.5], list[float], True), ({"a": 1}, dict, True),
    (None, int | None, True), ("x", int | None, False), (object(), set, True),  # unknown hints pass
])
def test_matches_type(value, hint, fits):
    assert config.matches_type(value, hint) is fits


def test_progress_honours_tqdm_disable(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert config.progress(range(3)).disable
    monkeypatch.setenv("TQDM_DISABLE", "")
    assert not config.progress(range(3)).disable and config.progress(range(3), enabled=False).disable


def test_threads_limits_torch_and_the_openmp_pools_then_restores():
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with config.threads(1):
        assert torch.get_num_threads() == 1
        pools = [p for p in threadpool_info() if p["user_api"] in ("openmp", "blas")]
        assert pools and all(p["num_threads"] == 1 for p in pools)  # faiss, scikit-learn, numpy too
    assert torch.get_num_threads() == before


def test_exit_with_parent_ends_the_child_when_its_parent_is_gone():
    import multiprocessing
    import time

    import psutil

    def middle(queue):  # a parent that starts a watched child, reports its pid, then dies at once
        child = multiprocessing.get_context("fork").Process(target=_watched, args=(os.getpid(),))
        child.start()
        queue.put(child.pid)
        queue.close()
        queue.join_thread()
        os._exit(0)  # no exit handlers: nothing but the watcher can end the orphaned child

    queue = multiprocessing.get_context("fork").Queue()
    parent = multiprocessing.get_context("fork").Process(target=middle, args=(queue,))
    parent.start()
    pid = queue.get(timeout=30)
    parent.join(30)
    def alive():
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    assert not alive()


def _watched(parent: int) -> None:
    import time

    config.exit_with_parent(parent)
    time.sleep(60)  # ended after ~0.5 s by the watcher once the parent is gone


def test_the_registry_holds_every_notebook_parameter_with_the_notebooks_default():
    """One place for each default: the notebooks' parameters cells must say what the registry says."""
    import ast

    from conftest import REPO

    from ovkit import runner

    declared = {}
    for nb in runner.discover(REPO / "notebooks"):
        for name, spec in nb.parameters.items():
            value = ast.literal_eval(spec["default"])
            declared.setdefault(name, value)
            assert value == config.PARAMETERS[name].default, f"{nb.path.name}: {name}"
    assert set(declared) == set(config.PARAMETERS)


def test_settings_parameters_name_real_dataclasses_and_parse_their_defaults():
    for name, parameter in config.PARAMETERS.items():
        if parameter.settings:
            assert dataclasses.is_dataclass(config.settings_class(name))
            config.settings(name)  # the registered default is valid
    assert config.settings_class("SEED") is None
    assert config.expect(None, Settings, "X") == Settings()
    with pytest.raises(TypeError, match=r"pass X as a Settings \(e.g. Settings.from_overrides\(X\)\), not a"):
        config.expect({"steps": 2}, Settings, "X")
