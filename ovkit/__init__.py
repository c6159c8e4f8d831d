"""ovkit: the helper package behind the OneVision reproducibility notebooks.

One module per pipeline stage (``data`` for notebook 00, ...); ``record`` stores metrics, ``store``
caches stage artifacts, ``runner`` executes notebooks for a profile.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from importlib import metadata

from .results import load_metrics, record, record_figure, record_interval, record_table

__version__ = "0.1.0"
__all__ = ["record", "record_interval", "record_table", "record_figure", "load_metrics", "seed", "setup",
           "device", "__version__"]


def device(requested: str = "") -> str:
    """Where models run: ``requested`` (a notebook's ``DEVICE`` parameter) or, when empty, ``cuda``
    if torch sees a GPU, else ``cpu``."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def seed(value: int) -> None:
    """Seed ``random``, NumPy's global generator and torch (if imported) in one call."""
    import numpy as np

    random.seed(value)
    np.random.seed(value)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(value)


def setup(threads: int | None = None, seed_value: int | None = None) -> None:
    """Fix the thread count (so timings compare) and print versions and the device.

    Called in every notebook's versions cell.
    """
    threads = threads or int(os.environ.get("OVKIT_THREADS", min(2, os.cpu_count() or 1)))
    info = {"ovkit": __version__, "python": platform.python_version(), "threads": threads}
    for name in ("numpy", "pandas", "torch", "timm", "faiss-cpu", "pybullet"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "torch" in info:
        import torch

        torch.set_num_threads(threads)
        info["device"] = device()
    if seed_value is not None:
        seed(seed_value)
    print("  ".join(f"{k}={v}" for k, v in info.items()))
