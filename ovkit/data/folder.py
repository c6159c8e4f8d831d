"""Bring your own data: a folder with ``items.csv``, ``images.csv`` and the image files.

``items.csv`` needs ``item_id`` and ``category`` (any other columns are kept as attributes);
``images.csv`` needs ``path`` (relative to the folder), ``item_id``, ``kind`` (``catalog`` or
``query``) and, for query images, ``split`` (``train``, ``val`` or ``test``; optionally
``heldout_val`` / ``heldout_test`` for photos under conditions training never saw, with an optional
``changed`` column naming what changed, default ``all``; give both or neither). Items whose query
images are never in ``train`` count as cold. Images are padded to a square and resized.

Every image file lies inside the folder (its fingerprint covers only those) and is listed once: a
file in two rows would show one photo under two SKUs, a catalogue image as its own query, or a
training photo again at test time.
"""

from __future__ import annotations

import contextlib
import hashlib
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
HELDOUT_SPLITS = ("heldout_val", "heldout_test")  # optional: photos under conditions training never saw
TABLES = ("items.csv", "images.csv")
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # what Pillow raises on a bad file


def is_folder_dataset(path) -> bool:
    """A folder with ``items.csv`` or ``images.csv`` (validate() says what else it needs)."""
    return bool(path) and Path(path).is_dir() and any((Path(path) / n).exists() for n in TABLES)


def _read_table(path: Path, problems: list) -> pd.DataFrame | None:
    """A CSV table as strings, or None with the reason added to ``problems``."""
    if not path.exists():
        problems.append(f"{path.name} is missing")
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        problems.append(f"{path.name} cannot be read as CSV ({str(err).strip()})")
        return None
    if table.empty:
        problems.append(f"{path.name} has a header but no rows")
        return None
    return table


def validate(root: Path, open_images: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check the two tables; every problem found is listed in one clear error.

    Args:
        root: the dataset folder.
        open_images: also decode every image (slower; ``ovkit run`` does it before notebook 00).
    Returns:
        ``(items, images)`` as read, with ``images["split"]`` filled in (``catalog`` for catalogue images).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    problems = []
    items, images = (_read_table(root / name, problems) for name in TABLES)
    for table, name, required in ((items, "items.csv", ITEM_COLUMNS), (images, "images.csv", IMAGE_COLUMNS)):
        missing = [] if table is None else [c for c in required if c not in table.columns]
        if missing:
            problems.append(f"{name} lacks column(s) {missing} (it has {list(table.columns)})")
    if problems:
        raise _problems(root, problems)

    problems = _id_problems(items, images) + _split_problems(images)
    problems += _path_problems(root, images, open_images)
    if problems:
        raise _problems(root, problems)
    return items, images


def _id_problems(items: pd.DataFrame, images: pd.DataFrame) -> list[str]:
    """Empty, repeated or unknown item ids, bad kinds, items without a catalogue image."""
    problems = []
    if (items["item_id"] == "").any():
        problems.append(f"items.csv has {int((items['item_id'] == '').sum())} row(s) without an item_id")
    if items["item_id"].duplicated().any():
        repeated = items["item_id"][items["item_id"].duplicated()].tolist()
        problems.append(f"items.csv repeats item_id(s) {repeated[:5]}")
    unknown = sorted(set(images["item_id"]) - set(items["item_id"]))
    if unknown:
        problems.append(f"images.csv names unknown item_id(s) {unknown[:5]} (add them to items.csv)")
    bad_kind = images.loc[~images["kind"].isin(KINDS), "kind"].unique().tolist()
    if bad_kind:
        problems.append(f"images.csv has bad kind value(s) {bad_kind[:5]}; use 'catalog' or 'query'")
    no_catalog = sorted(set(items["item_id"]) - set(images.loc[images["kind"] == "catalog", "item_id"]))
    if no_catalog:
        problems.append(f"{len(no_catalog)} item(s) have no catalog image, e.g. {no_catalog[:5]}")
    return problems


def _split_problems(images: pd.DataFrame) -> list[str]:
    """Query splits outside train/val/test, or a split without photos (fills ``split`` in place)."""
    if "split" not in images.columns:
        images["split"] = ""
    images.loc[images["kind"] == "catalog", "split"] = "catalog"
    queries = images[images["kind"] == "query"]
    bad_split = sorted(set(queries.loc[~queries["split"].isin(SPLITS + HELDOUT_SPLITS), "split"]))
    if bad_split:
        return [f"query images need split train/val/test (or heldout_val/heldout_test), "
                f"found {bad_split[:5]}"]
    empty = [s for s in SPLITS if not (queries["split"] == s).any()]
    if empty:
        return [f"no query image in split(s) {empty}: alignment trains on 'train' photos, "
                "choices are made on 'val' and results reported on 'test'"]
    heldout = [s for s in HELDOUT_SPLITS if (queries["split"] == s).any()]
    if len(heldout) == 1:  # the kit uses held-out photos only as a pair (Catalogue.has_heldout)
        lacking = next(s for s in HELDOUT_SPLITS if s not in heldout)
        return [f"query images have split {heldout[0]} but none {lacking}: held-out conditions are chosen "
                "on 'heldout_val' and reported on 'heldout_test'; give both splits photos, or neither"]
    return []


def _path_problems(root: Path, images: pd.DataFrame, open_images: bool) -> list[str]:
    """Paths leaving the folder, files in several rows, missing or unreadable files."""
    real_root = root.resolve()
    files = images["path"].map(lambda p: _real(real_root / p))
    inside = files.map(lambda f: f.is_relative_to(real_root)).astype(bool)
    return (_outside_problems(images.loc[~inside, "path"]) + _reuse_problems(images[inside], files[inside])
            + _file_problems(root, images[inside], open_images))  # a file outside is never opened


def _real(path: Path) -> Path:
    """``path`` with ``..`` and symlinks resolved (an absolute path in images.csv replaces the folder);
    as given when it cannot be (a NUL byte, a symlink loop): it then counts as a missing file."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return path


def _outside_problems(outside: pd.Series) -> list[str]:
    """Image paths that leave the folder: refused, as the folder's fingerprint would miss a change."""
    if outside.empty:
        return []
    return [f"{len(outside)} image path(s) lead outside the dataset folder, e.g. {outside.tolist()[:3]}: "
            "copy those files into the folder and give paths relative to it (only files inside the folder "
            "count in its fingerprint, so a changed outside file would reuse stale cached pixels)"]


# Why one image file in several rows is wrong, by the column whose values differ between the rows.
REUSE = {
    "item_id": ("are listed under several item_ids",
                "a photo shows one SKU, keep only the row of the right item_id"),
    "kind": ("are both a catalog image and a query photo",
             "a query would find its own image in the catalogue, use another photo for the query"),
    "split": ("are query photos in several splits",
              "a photo trained or chosen on would be scored again, give each split its own photos"),
    "": ("are listed more than once", "remove the repeated rows"),
}


def _reuse_problems(images: pd.DataFrame, files: pd.Series) -> list[str]:
    """Image files (by resolved path, so aliases count) that appear in more than one row."""
    rows = images.assign(file=files.astype(str))
    found = {reason: [] for reason in REUSE}
    for _, group in rows[rows["file"].duplicated(keep=False)].groupby("file", sort=False):
        differ = {"item_id": group["item_id"], "kind": group["kind"],
                  "split": group.loc[group["kind"] == "query", "split"]}
        reasons = [c for c, values in differ.items() if values.nunique() > 1] or [""]
        for reason in reasons:
            values = sorted(set(differ.get(reason, ())))
            found[reason].append(group["path"].iloc[0] + (f" ({', '.join(values)})" if values else ""))
    return [f"{len(found[r])} image file(s) {what}, e.g. {found[r][:3]}: {fix}"
            for r, (what, fix) in REUSE.items() if found[r]]


def _file_problems(root: Path, images: pd.DataFrame, open_images: bool) -> list[str]:
    """Image files that are missing or (with ``open_images``) cannot be decoded."""
    missing = [p for p in images["path"] if not (root / p).is_file()]
    if missing:
        return [f"{len(missing)} image file(s) missing, e.g. {missing[:3]}"]
    if open_images:
        paths = progress(images["path"], desc="checking images", unit="image")
        unreadable = [f"{p} ({reason})" for p in paths if (reason := _unreadable(root / p))]
        if unreadable:
            return [f"{len(unreadable)} image file(s) cannot be read, e.g. {unreadable[:3]}"]
    return []


def _problems(root: Path, problems: list[str]) -> DataError:
    return DataError(f"{root} is not a valid ovkit dataset folder ({len(problems)} problem(s); the "
                     f"format is in the README's 'Bring your own data'):\n- " + "\n- ".join(problems))


def _unreadable(path: Path) -> str | None:
    """Why an image file cannot be decoded, or None when it can."""
    try:
        with Image.open(path) as im:
            im.load()
    except UNREADABLE as err:
        return str(err) or type(err).__name__
    return None


def load_image(path: Path, size: int) -> np.ndarray:
    """An image file as (size,size,3) uint8: padded to a square with white, then resized."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    side = max(im.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return np.asarray(square.resize((size, size), Image.LANCZOS))


def load_images(root: Path, paths, size: int) -> np.ndarray:
    """All images as (N,size,size,3) uint8; every unreadable file is named in one error."""
    pixels, unreadable = np.zeros((len(paths), size, size, 3), np.uint8), []
    for i, p in enumerate(progress(paths, desc="loading images", unit="image")):
        try:
            pixels[i] = load_image(root / p, size)
        except UNREADABLE as err:
            unreadable.append(f"{p} ({err})")
    if unreadable:
        raise _problems(root, [f"{len(unreadable)} image file(s) cannot be read, e.g. {unreadable[:3]} "
                               "(fix them or remove their rows from images.csv)"])
    return pixels


def build(folder: Path, root: Path, items: pd.DataFrame, images: pd.DataFrame, image_size: int) -> dict:
    """Write the catalogue tables and pixels for a user's dataset folder (tables from :func:`validate`)."""
    items = items.rename(columns={"item_id": "sku"}).reset_index(drop=True)
    for column in items.columns.drop("sku"):  # tables are read as text; numbers become numbers again
        with contextlib.suppress(ValueError, TypeError):
            items[column] = pd.to_numeric(items[column])
    items.insert(0, "item_id", np.arange(len(items)))
    index = dict(zip(items["sku"], items["item_id"], strict=True))
    # Optional attributes the later notebooks use; sensible stand-ins when a dataset lacks them.
    items["model_id"] = items.get("model_id", items["item_id"])
    items["fine_type"] = items.get("fine_type", items["category"])
    items["colour"] = items.get("colour", "unknown")
    items["name"] = items.get("name", items["sku"])
    items["creator"] = items.get("creator", "unknown")  # the shopper simulator's brand taste
    items["price"] = items.get("price", 1.0)  # one price: the simulated shoppers ignore price
    train_items = set(images.loc[(images["kind"] == "query") & (images["split"] == "train"), "item_id"])
    items["cold"] = ~items["sku"].isin(train_items)
    pixels = load_images(root, list(images["path"]), image_size)
    views = pd.DataFrame({
        "view_id": np.arange(len(images)),
        "item_id": images["item_id"].map(index).to_numpy(),
        "kind": images["kind"].to_numpy(),
        "source": images["path"].to_numpy(),
        "split": images["split"].to_numpy(),
        "changed": _changed(images),
    })
    items.to_parquet(folder / "items.parquet", index=False)
    views.to_parquet(folder / "views.parquet", index=False)
    np.save(folder / "pixels.npy", pixels)
    return {"skipped": [], "source_files": ["items.csv", "images.csv"]}


def _changed(images: pd.DataFrame) -> np.ndarray:
    """What differs from training conditions per image: the optional ``changed`` column, else
    ``all`` for held-out splits and ``none`` otherwise."""
    default = np.where(images["split"].isin(HELDOUT_SPLITS), "all", "none")
    if "changed" not in images:
        return default
    given = images["changed"].fillna("").astype(str).to_numpy()
    return np.where(given == "", default, given)


def export(catalogue, root: Path) -> Path:
    """Write any built catalogue in this folder format (``images/<view_id>.png``, two tables).

    Reading the folder back with ``catalogue(source=root)`` gives the same SKUs, attributes,
    splits, cold flags and (at the same image size) the same pixels. ``root`` must be new or empty,
    so nothing is overwritten.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty: export into a new folder")
    (root / "images").mkdir(parents=True, exist_ok=True)
    items = catalogue.items.drop(columns=["item_id", "cold"]).rename(columns={"sku": "item_id"})
    views = catalogue.views
    sku = catalogue.items["sku"].to_numpy()
    images = pd.DataFrame({"path": [f"images/{v}.png" for v in views["view_id"]],
                           "item_id": sku[views["item_id"].to_numpy()], "kind": views["kind"].to_numpy(),
                           "split": np.where(views["kind"] == "catalog", "", views["split"]),
                           "changed": views["changed"].to_numpy()})
    for view_id, path in zip(progress(views["view_id"], desc="writing images", unit="image"), images["path"],
                             strict=True):
        Image.fromarray(np.asarray(catalogue.pixels[view_id])).save(root / path)
    items[["item_id", "category"] + [c for c in items if c not in ("item_id", "category")]].to_csv(
        root / "items.csv", index=False)
    images.to_csv(root / "images.csv", index=False)
    return root


def fingerprint(root: Path) -> str:
    """Identity of a dataset folder: its tables' content and the image files' sizes and times."""
    h = hashlib.sha256()
    for name in ("items.csv", "images.csv"):
        h.update((root / name).read_bytes())
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() not in (".csv",):
            stat = path.stat()
            h.update(f"{path.relative_to(root)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return h.hexdigest()[:12]
