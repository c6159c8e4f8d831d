"""Build the Sweet Home 3D multi-view catalogue: models → SKUs → rendered views → splits."""

from __future__ import annotations

import os
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import exit_with_parent, progress
from . import render, sh3d, skus
from .sh3d import DataError, FurnitureModel


def select_models(models: list[FurnitureModel], seed: int) -> list[FurnitureModel]:
    """Products only, in a seeded order that cycles through categories.

    Taking the first N of this order gives a category-balanced subset for small profiles.
    """
    products = [m for m in models if m.category not in sh3d.NON_PRODUCTS]
    rng = np.random.default_rng(seed)
    by_category: dict[str, list] = {}
    for m in sorted(products, key=lambda m: m.model_key):
        by_category.setdefault(m.category, []).append(m)
    queues = [list(rng.permutation(np.array(ms, dtype=object))) for _, ms in sorted(by_category.items())]
    order = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


def _render_model(job):
    """Worker: load one model and render all views of all its colourways.

    Returns ``(model, result)`` where result is a dict of images and facts, or an error string
    when the mesh cannot be read or renders empty (the build skips such models and reports them).
    """
    model, model_index, colourways, query_views, cfg, seed = job
    try:
        mesh = sh3d.load_mesh(model)
    except DataError as err:
        return model, str(err)
    renderer = _worker_renderer()
    try:
        renderer.load(mesh)
    except Exception as err:  # pybullet refusing a mesh is a per-model problem
        return model, f"pybullet could not load the mesh: {err}"
    rng = np.random.default_rng([seed, model_index])
    ways = skus.colourways(mesh, colourways, rng)
    images, facts = [], []
    for way, (_, colours) in enumerate(ways):
        renderer.set_colours(colours)
        catalog = render.catalog_view(renderer, cfg)
        if catalog is None:
            return model, "renders empty (flat or invisible model)"
        images.append(catalog)
        facts.append({"colourway": way, "kind": "catalog", "source": "render"})
        for q in range(query_views):
            view_rng = np.random.default_rng([seed, model_index, way, q])
            out = render.query_view(renderer, cfg, view_rng)
            if out is None:
                return model, "renders empty from some viewpoints"
            images.append(out[0])
            facts.append({"colourway": way, "kind": "query", "source": "render", **out[1]})
        for split, changed, families, key in heldout_plan(cfg):
            out = _heldout_view(renderer, cfg, families, [seed, model_index, way, *key])
            if out is not None:
                images.append(out[0])
                facts.append({"colourway": way, "kind": "query", "source": "render", **out[1],
                              "split": split, "changed": changed})
    icon = sh3d.load_icon(model)
    icon_image = render.icon_view(icon, cfg) if icon is not None else None
    if icon_image is not None:  # the real shop icon shows the original colourway
        images.append(icon_image)
        facts.append({"colourway": 0, "kind": "catalog", "source": "icon"})
    return model, {"colours": [c for c, _ in ways], "images": np.stack(images), "facts": facts,
                   "faces": int(len(mesh["faces"]))}


def heldout_plan(cfg: render.RenderConfig):
    """The held-out photos of one SKU: (split, changed factor or "all", families, seed key) each.

    ``heldout_val`` photos take factors from their validation family, ``heldout_test`` photos from
    their test family: ``heldout_views`` photos change every factor at once, ``factor_views`` more
    per factor change that factor alone.
    """
    for f, family in enumerate(("val", "test")):
        everything = dict.fromkeys(render.FACTORS, family)
        for q in range(cfg.heldout_views):
            yield f"heldout_{family}", "all", everything, (1000 + f, q)
        for g, factor in enumerate(render.FACTORS):
            for q in range(cfg.factor_views):
                yield f"heldout_{family}", factor, {factor: family}, (2000 + 10 * f + g, q)


def _heldout_view(renderer, cfg, families, key, attempts: int = 5):
    """A held-out photo, drawn again (up to ``attempts`` times) when a viewpoint renders empty.

    A close-up may miss a thin model; such a photo is left out rather than the whole model, so
    held-out families never change which models the catalogue has.
    """
    for attempt in range(attempts):
        out = render.query_view(renderer, cfg, np.random.default_rng([*key, attempt]), families)
        if out is not None:
            return out
    return None


_RENDERER: tuple[int, render.Renderer] | None = None


def _worker_renderer() -> render.Renderer:
    """One renderer per process (a forked worker must not reuse its parent's connection)."""
    global _RENDERER
    if _RENDERER is None or _RENDERER[0] != os.getpid():
        _RENDERER = (os.getpid(), render.Renderer())
    return _RENDERER[1]


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers exit when the process that made them dies (even by kill -9).

    fork where the OS has it: spawn would re-run a user's script that lacks a __main__ guard.
    """
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=get_context(method), initializer=exit_with_parent,
                               initargs=(os.getpid(),))


def render_models(order, n_models, colourways, query_views, cfg, seed, workers, keep=None):
    """Render models in ``order`` until ``n_models`` succeed (0 = all); returns (done, skipped).

    ``keep(result)``, if given, is called on each successful model's result in order and its return
    value is kept instead (e.g. the facts without the images, once those are written to disk).
    """
    target = n_models or len(order)
    jobs = ((m, i, colourways, query_views, cfg, seed) for i, m in enumerate(order))
    done, skipped = [], []
    bar = progress(total=target, desc="rendering models", unit="model")
    pool = worker_pool(workers) if workers > 1 else None
    try:
        results = pool.map(_render_model, jobs, chunksize=1) if pool else map(_render_model, jobs)
        for model, result in results:
            if isinstance(result, str):
                skipped.append({"model": model.model_key, "name": model.name, "reason": result})
                continue
            done.append((model, keep(result) if keep else result))
            bar.update()
            if len(done) == target:
                break
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    return done, skipped


def build(folder: Path, files: list[Path], n_models: int, colourways: int, query_views: int,
          cold_fraction: float, val_fraction: float, test_fraction: float, seed: int,
          cfg: render.RenderConfig, workers: int) -> dict:
    """Write ``items.parquet``, ``views.parquet`` and ``pixels.npy`` into ``folder``."""
    models, licences = [], {}
    for f in files:
        models += sh3d.read_catalogue(f)
        licences[f.stem] = catalogue_licence(f)
    order = select_models(models, seed)
    if n_models and n_models > len(order):
        raise ValueError(f"N_MODELS={n_models} but the source has only {len(order)} product models")
    with PixelWriter(folder / "pixels.npy") as pixels:  # streamed to disk: the images never sit in memory
        done, skipped = render_models(order, n_models, colourways, query_views, cfg, seed, workers,
                                      keep=pixels.add)
    if n_models and len(done) < n_models:
        raise DataError(f"only {len(done)} of {n_models} models could be rendered; "
                        f"skipped: {skipped[:5]}")

    rng = np.random.default_rng([seed, 1])
    creators = sorted({m.creator for m, _ in done})
    premium = dict(zip(creators, rng.lognormal(0.0, 0.25, size=len(creators)), strict=True))
    items, views = [], []
    for model_id, (model, result) in enumerate(done):
        kind = skus.fine_type(model.name, model.tags)
        first_item = len(items)
        for way, colour in enumerate(result["colours"]):
            items.append({
                "item_id": len(items), "sku": f"{model.model_key}/{way}", "model_id": model_id,
                "model_key": model.model_key, "name": model.name, "category": model.category,
                "fine_type": kind, "colour": colour, "colourway": way, "creator": model.creator,
                "width_cm": model.width, "depth_cm": model.depth, "height_cm": model.height,
                "price": skus.synthetic_price(kind, (model.width, model.depth, model.height),
                                              premium[model.creator], rng),
                "source": model.sh3f.stem, "licence": licences[model.sh3f.stem],
            })
        for fact in result["facts"]:
            views.append({"view_id": len(views), "item_id": first_item + fact.pop("colourway"), **fact})

    items = pd.DataFrame(items)
    views = pd.DataFrame(views)
    if "changed" not in views:  # no held-out photos were asked for
        views["changed"], views["split"] = None, None
    views["changed"] = views["changed"].fillna("none")
    heldout_split = views.pop("split")
    items["cold"], views["split"] = assign_splits(items, views, cold_fraction, val_fraction,
                                                  test_fraction, seed)
    views["split"] = heldout_split.fillna(views["split"])
    items.to_parquet(folder / "items.parquet", index=False)
    views.to_parquet(folder / "views.parquet", index=False)
    return {"skipped": skipped, "source_files": [f.name for f in files]}


class PixelWriter:
    """Writes the views' images to ``path`` as one ``.npy`` array (N, H, W, 3) uint8, model by model.

    The images go to a raw file as they arrive; on a clean exit the ``.npy`` header (which needs the
    final count) is written and the raw bytes are copied behind it, so the whole catalogue is never
    held in memory (at the default profile it is 2.6 GB). The result equals
    ``np.save(path, np.concatenate(images))``.
    """

    def __init__(self, path: Path):
        self.path, self.raw = path, path.with_name(path.name + ".raw")
        self.shape, self.count = None, 0

    def __enter__(self):
        self.file = self.raw.open("wb")
        return self

    def add(self, result: dict) -> dict:
        """Write ``result["images"]`` (n, H, W, 3); returns the result without them."""
        images = np.ascontiguousarray(result["images"], np.uint8)
        if self.shape is None:
            self.shape = images.shape[1:]
        elif images.shape[1:] != self.shape:
            raise ValueError(f"image shape {images.shape[1:]} differs from the first model's {self.shape}")
        self.file.write(images.tobytes())
        self.count += len(images)
        return {k: v for k, v in result.items() if k != "images"}

    def __exit__(self, kind, error, trace):
        self.file.close()
        try:
            if kind is None:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                          "shape": (self.count, *(self.shape or (0, 0, 3)))}
                with self.path.open("wb") as out, self.raw.open("rb") as raw:
                    np.lib.format.write_array_header_1_0(out, header)
                    shutil.copyfileobj(raw, out, 16 << 20)
        finally:
            self.raw.unlink(missing_ok=True)


def assign_splits(items: pd.DataFrame, views: pd.DataFrame, cold_fraction: float,
                  val_fraction: float, test_fraction: float, seed: int):
    """Cold SKUs and the split of every view.

    Catalogue views get split ``catalog``. A *cold* SKU (a seeded ``cold_fraction`` of SKUs) never
    appears in a training query: its photos are shuffled and halved between ``val`` and ``test``
    (the larger half to test). Each warm SKU's photos are shuffled and divided: ``test_fraction``
    to test, ``val_fraction`` to val (at least one each when the SKU has three or more), the rest
    to train. Photos under held-out conditions (``changed`` other than ``none``) are not split
    here: they come with their ``heldout_*`` split. A view is in exactly one split.
    """
    rng = np.random.default_rng([seed, 2])
    n_cold = int(round(cold_fraction * len(items)))
    cold = np.zeros(len(items), bool)
    cold[rng.choice(len(items), n_cold, replace=False)] = True
    split = np.array(["catalog"] * len(views), dtype=object)
    queries = views[(views["kind"] == "query") & (views["changed"] == "none")]
    for item_id, group in queries.groupby("item_id", sort=True):
        ids = rng.permutation(group.index.to_numpy())
        if cold[item_id]:
            split[ids[: len(ids) // 2]] = "val"
            split[ids[len(ids) // 2 :]] = "test"
            continue
        n = len(ids)
        n_test = max(1, int(round(n * test_fraction))) if n >= 3 else 0
        n_val = max(1, int(round(n * val_fraction))) if n >= 3 else 0
        split[ids[:n_test]] = "test"
        split[ids[n_test : n_test + n_val]] = "val"
        split[ids[n_test + n_val :]] = "train"
    return cold, split


# Licences per library, from the Debian package's copyright file (debian/copyright).
DEBIAN_LICENCES = {
    "BlendSwap-CC-0": "CC0 (Blend Swap contributors, eTeks)",
    "BlendSwap-CC-BY": "CC-BY-3.0 (Blend Swap contributors)",
    "KatorLegaz": "CC-BY-3.0-US (Andrew Kator & Jennifer Legaz)",
    "Reallusion": "CC-BY-3.0-US (Reallusion)",
    "Scopia": "CC-BY-3.0 (Scopia Visual Interfaces Systems)",
}


def catalogue_licence(sh3f: Path) -> str:
    """Licence of a ``.sh3f`` library: Debian's record, else the file's own ``license`` line."""
    if sh3f.stem in DEBIAN_LICENCES:
        return DEBIAN_LICENCES[sh3f.stem]
    with zipfile.ZipFile(sh3f) as zf:
        props = sh3d.parse_properties(zf.read(sh3d.PROPERTIES).decode("latin-1"))
    return props.get("license", "unknown: check the library's own terms")


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
