"""The multi-view product catalogue (notebook 00): SKUs, catalogue views and shoppers' query views.

``catalogue(...)`` returns a :class:`Catalogue` from the stage cache, building it on a miss from
the Sweet Home 3D furniture package (fetched with ``apt-get download``) or from a dataset folder
of your own (``items.csv`` + ``images.csv`` + images).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import store
from ..config import PARAMETERS, defaults
from . import build as _build
from . import folder as _folder
from . import sh3d
from .render import RenderConfig
from .sh3d import DataError
from .skus import PALETTE

__all__ = ["Catalogue", "catalogue", "from_parameters", "RenderConfig", "DataError"]

STAGE_VERSION = 3  # bump when the build code changes what it writes (see CONTRIBUTING.md)


class Catalogue:
    """A built catalogue: ``items`` (one row per SKU), ``views`` (one row per image), ``pixels``.

    ``pixels[view_id]`` is a (H,W,3) uint8 image, memory-mapped from the artifact.
    """

    def __init__(self, artifact: store.Artifact):
        self.artifact = artifact
        self.key = artifact.key
        self.meta = artifact.meta
        self.items = pd.read_parquet(artifact / "items.parquet")
        self.views = pd.read_parquet(artifact / "views.parquet")
        self.pixels = np.load(artifact / "pixels.npy", mmap_mode="r")

    def __repr__(self):
        s = self.summary()
        return (f"Catalogue({s['n_skus']} SKUs of {s['n_models']} models, {s['n_catalog_views']} catalogue "
                f"+ {s['n_query_views']} query views, key={self.key})")

    def images(self, view_ids) -> np.ndarray:
        """Images of the given views, (N,H,W,3) uint8."""
        return np.asarray(self.pixels[np.asarray(view_ids)])

    def query_views(self, split: str | None = None, cold: bool | None = None) -> pd.DataFrame:
        """Query views, optionally of one split and of cold (or warm) SKUs only."""
        views = self.views[self.views["kind"] == "query"]
        if split is not None:
            views = views[views["split"] == split]
        if cold is not None:
            views = views[self.items["cold"].to_numpy()[views["item_id"].to_numpy()] == cold]
        return views

    def heldout_views(self, family: str = "test", changed: str | None = "all",
                      cold: bool | None = None) -> pd.DataFrame:
        """Photos under held-out conditions: split ``heldout_<family>``, with ``changed`` = ``"all"``
        (every factor held out), one factor's name (that factor alone) or ``None`` (both)."""
        views = self.query_views(f"heldout_{family}", cold)
        return views if changed is None else views[views["changed"] == changed]

    @property
    def has_heldout(self) -> bool:
        """Whether the catalogue has photos under held-out conditions (validation and test)."""
        return {"heldout_val", "heldout_test"} <= set(self.views["split"])

    def catalog_views(self) -> pd.DataFrame:
        return self.views[self.views["kind"] == "catalog"]

    @property
    def rendered(self) -> bool:
        """True for the kit's Sweet Home 3D renders (colourways, render settings); False for a folder."""
        return self.meta["params"]["kind"] == "sh3d"

    def summary(self) -> dict:
        """Counts that describe the catalogue (the numbers notebook 00 records)."""
        queries = self.views[self.views["kind"] == "query"]
        return {
            "n_models": int(self.items["model_id"].nunique()),
            "n_skus": len(self.items),
            "n_categories": int(self.items["category"].nunique()),
            "n_fine_types": int(self.items["fine_type"].nunique()),
            "n_catalog_views": int((self.views["kind"] == "catalog").sum()),
            "n_query_views": len(queries),
            "n_cold_skus": int(self.items["cold"].sum()),
            **{f"n_{s}_views": int((queries["split"] == s).sum())
               for s in ("train", "val", "test", "heldout_val", "heldout_test")},
            "image_size": int(self.pixels.shape[1]),
            "n_skipped_models": len(self.meta.get("skipped", [])),
        }


def catalogue(
    n_models: int = 60,
    colourways: int = 2,
    query_views: int = 6,
    cold_fraction: float = 0.1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    seed: int = 0,
    render: dict | None = None,
    source: str | Path = "",
    workers: int | None = None,
    rebuild: bool = False,
) -> Catalogue:
    """The catalogue for these parameters, from the stage cache or built now.

    Args:
        n_models: 3D models to use (0 = every usable one); models that fail to load are
            skipped, reported in ``meta["skipped"]`` and replaced by the next ones.
        colourways: SKUs per model (same shape, different dominant colour).
        query_views: shopper photos rendered per SKU.
        cold_fraction: share of SKUs held out of all training queries (new-item experiments).
        val_fraction, test_fraction: share of each warm SKU's query views for val and test.
        seed: one seed for model choice, colourways, prices, views and splits.
        render: overrides of :class:`RenderConfig` fields, e.g. ``{"occlusion_prob": 0.0}``.
        source: ``""`` (Sweet Home 3D, fetched if needed), a ``.deb``, a ``.sh3f`` or a folder
            of them, or a dataset folder with ``items.csv`` / ``images.csv``.
        workers: rendering processes (default: up to 2); the result does not depend on it.
        rebuild: build again even if cached.
    """
    cfg = RenderConfig.from_overrides(render)
    started = time.perf_counter()
    if _folder.is_folder_dataset(source):
        root = Path(source).resolve()
        tables = _folder.validate(root)  # every problem of the tables at once, before anything is hashed
        params = {"kind": "folder", "root": str(root), "fingerprint": _folder.fingerprint(root),
                  "image_size": cfg.image_size}
        build = lambda out: _folder.build(out, root, *tables, cfg.image_size)  # noqa: E731
    else:
        _check_counts(n_models, colourways, query_views, cold_fraction, val_fraction, test_fraction)
        files = sh3d.resolve_sh3f(source)
        params = {"kind": "sh3d", "source": sh3d.fingerprint(files), "n_models": n_models,
                  "colourways": colourways, "query_views": query_views, "cold_fraction": cold_fraction,
                  "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
                  "render": cfg.as_dict()}
        build = lambda out: _build.build(  # noqa: E731
            out, files, n_models, colourways, query_views, cold_fraction, val_fraction,
            test_fraction, seed, cfg, workers or _build.default_workers())
    artifact = store.cached("catalogue", params, build, version=STAGE_VERSION, rebuild=rebuild)
    result = Catalogue(artifact)
    result.load_seconds = time.perf_counter() - started
    return result


def from_parameters(params: dict) -> Catalogue:
    """The catalogue for notebook-style parameters (``N_MODELS``, ``RENDER``, …): the registered
    catalogue parameters (:data:`ovkit.config.PARAMETERS` with an ``argument``); other names are
    ignored and absent ones take the registry's defaults, as a notebook run without them would."""
    names = [name for name, p in PARAMETERS.items() if p.argument]
    values = {**defaults(names), **{name: params[name] for name in names if name in params}}
    return catalogue(**{PARAMETERS[name].argument: value for name, value in values.items()})


def _check_counts(n_models, colourways, query_views, cold_fraction, val_fraction, test_fraction):
    if n_models < 0:
        raise ValueError(f"N_MODELS must be >= 0 (0 = all), got {n_models}")
    if not 1 <= colourways <= len(PALETTE):
        raise ValueError(f"COLOURWAYS must be between 1 and {len(PALETTE)}, got {colourways}")
    if query_views < 1:
        raise ValueError(f"QUERY_VIEWS must be >= 1, got {query_views}")
    for name, value in (("COLD_FRACTION", cold_fraction), ("val_fraction", val_fraction),
                        ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
