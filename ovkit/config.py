"""Settings dataclasses overridden from notebook parameters (``RENDER={...}``, ``ALIGN={...}``)."""

from __future__ import annotations

import contextlib
import dataclasses


def with_overrides(cls, overrides: dict | None, what: str):
    """``cls()`` with some fields replaced; an unknown name is an error listing the valid ones.

    Lists become tuples, because YAML and papermill hand over lists where the defaults are tuples.
    """
    overrides = dict(overrides or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; valid names: {', '.join(names)}")
    cast = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    result = dataclasses.replace(cls(), **cast)
    if hasattr(result, "validate"):  # settings that check their own ranges
        result.validate()
    return result


def progress(iterable=None, enabled: bool = True, **kwargs):
    """A tqdm progress bar (a widget in Jupyter) that honours ``TQDM_DISABLE``.

    tqdm's notebook bar passes ``disable=False`` itself, which beats the environment variable, so
    CI and ``make notebooks`` would store widget outputs; deciding here keeps them quiet.
    """
    import os

    from tqdm.auto import tqdm

    quiet = not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(iterable, disable=quiet, **kwargs)


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
