"""Settings dataclasses overridden from notebook parameters (``RENDER={...}``, ``ALIGN={...}``), and
the small process helpers every stage shares (threads, progress bars, exit with the parent)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import types
import typing


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
