"""Bring your own data: a folder with ``items.csv``, ``images.csv`` and the image files.

``items.csv`` needs ``item_id`` and ``category`` (any other columns are kept as attributes);
``images.csv`` needs ``path`` (relative to the folder), ``item_id``, ``kind`` (``catalog`` or
``query``) and, for query images, ``split`` (``train``, ``val`` or ``test``). Items whose query
images are never in ``train`` count as cold. Images are padded to a square and resized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from ..config import progress
from .sh3d import DataError

ITEM_COLUMNS = ("item_id", "category")
IMAGE_COLUMNS = ("path", "item_id", "kind")
KINDS = ("catalog", "query")
SPLITS = ("train", "val", "test")


def is_folder_dataset(path) -> bool:
    return bool(path) and Path(path).is_dir() and (Path(path) / "items.csv").exists()


def validate(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check the two tables; every problem found is listed in one clear error."""
    problems = []
    for name in ("items.csv", "images.csv"):
        if not (root / name).exists():
            problems.append(f"{name} is missing")
    if problems:
        raise DataError(f"{root} is not an ovkit dataset folder: " + "; ".join(problems))
    items = pd.read_csv(root / "items.csv")
    images = pd.read_csv(root / "images.csv", dtype={"path": str})
    for table, name, required in ((items, "items.csv", ITEM_COLUMNS), (images, "images.csv", IMAGE_COLUMNS)):
        missing = [c for c in required if c not in table.columns]
        if missing:
            problems.append(f"{name} lacks column(s) {missing}")
    if problems:
        raise DataError(f"{root}: " + "; ".join(problems))

    items["item_id"] = items["item_id"].astype(str)
    images["item_id"] = images["item_id"].astype(str)
    if items["item_id"].duplicated().any():
        repeated = items["item_id"][items["item_id"].duplicated()].tolist()
        problems.append(f"items.csv repeats item_id(s) {repeated[:5]}")
    unknown = sorted(set(images["item_id"]) - set(items["item_id"]))
    if unknown:
        problems.append(f"images.csv names unknown item_id(s) {unknown[:5]} (add them to items.csv)")
    bad_kind = images.loc[~images["kind"].isin(KINDS), "kind"].unique().tolist()
    if bad_kind:
        problems.append(f"images.csv has bad kind value(s) {bad_kind[:5]}; use 'catalog' or 'query'")
    if "split" not in images.columns:
        images["split"] = np.where(images["kind"] == "catalog", "catalog", "")
    images["split"] = images["split"].fillna("").astype(str)
    images.loc[images["kind"] == "catalog", "split"] = "catalog"
    bad_split = images.loc[(images["kind"] == "query") & ~images["split"].isin(SPLITS), "split"]
    if len(bad_split):
        problems.append(f"query images need split train/val/test, found {sorted(set(bad_split))[:5]}")
    missing_files = [p for p in images["path"] if not (root / p).is_file()]
    if missing_files:
        problems.append(f"{len(missing_files)} image file(s) missing, e.g. {missing_files[:3]}")
    no_catalog = sorted(set(items["item_id"]) - set(images.loc[images["kind"] == "catalog", "item_id"]))
    if no_catalog:
        problems.append(f"{len(no_catalog)} item(s) have no catalog image, e.g. {no_catalog[:5]}")
    if problems:
        raise DataError(f"{root}: dataset problems:\n- " + "\n- ".join(problems))
    return items, images


def load_image(path: Path, size: int) -> np.ndarray:
    """An image file as (size,size,3) uint8: padded to a square with white, then resized."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read image {path} ({err}); fix or remove it from images.csv") from err
    side = max(im.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return np.asarray(square.resize((size, size), Image.LANCZOS))


def build(folder: Path, root: Path, image_size: int) -> dict:
    """Write the catalogue tables and pixels for a user's dataset folder."""
    items, images = validate(root)
    items = items.rename(columns={"item_id": "sku"}).reset_index(drop=True)
    items.insert(0, "item_id", np.arange(len(items)))
    index = dict(zip(items["sku"], items["item_id"], strict=True))
    # Optional attributes the later notebooks use; sensible stand-ins when a dataset lacks them.
    items["model_id"] = items.get("model_id", items["item_id"])
    items["fine_type"] = items.get("fine_type", items["category"])
    items["colour"] = items.get("colour", "unknown")
    items["name"] = items.get("name", items["sku"])
    train_items = set(images.loc[(images["kind"] == "query") & (images["split"] == "train"), "item_id"])
    items["cold"] = ~items["sku"].isin(train_items)
    pixels = np.stack([load_image(root / p, image_size)
                       for p in progress(images["path"], desc="loading images", unit="image")])
    views = pd.DataFrame({
        "view_id": np.arange(len(images)),
        "item_id": images["item_id"].map(index).to_numpy(),
        "kind": images["kind"].to_numpy(),
        "source": images["path"].to_numpy(),
        "split": images["split"].to_numpy(),
    })
    items.to_parquet(folder / "items.parquet", index=False)
    views.to_parquet(folder / "views.parquet", index=False)
    np.save(folder / "pixels.npy", pixels)
    return {"skipped": [], "source_files": ["items.csv", "images.csv"]}


def fingerprint(root: Path) -> str:
    """Identity of a dataset folder: its tables' content and the image files' sizes and times."""
    import hashlib

    h = hashlib.sha256()
    for name in ("items.csv", "images.csv"):
        h.update((root / name).read_bytes())
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() not in (".csv",):
            stat = path.stat()
            h.update(f"{path.relative_to(root)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return h.hexdigest()[:12]
