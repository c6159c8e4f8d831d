"""Bring-your-own dataset folders: a valid one builds, each kind of bad input is named."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ovkit import data
from ovkit.data import DataError


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "shop"
    (root / "img").mkdir(parents=True)
    rows = []
    for item in ("a", "b"):
        for k, (kind, split) in enumerate([("catalog", ""), ("query", "train"), ("query", "test")]):
            path = f"img/{item}{k}.png"
            colour = (255, 0, 0) if item == "a" else (0, 0, 255)
            Image.new("RGB", (40 + 10 * k, 30), colour).save(root / path)
            rows.append({"path": path, "item_id": item, "kind": kind, "split": split})
    pd.DataFrame({"item_id": ["a", "b"], "category": ["cup", "cup"], "brand": ["x", "y"]}).to_csv(
        root / "items.csv", index=False)
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    return root


def test_valid_folder_builds_a_catalogue(kit_home, folder):
    cat = data.catalogue(source=folder, render={"image_size": 24})
    s = cat.summary()
    assert (s["n_skus"], s["n_catalog_views"], s["n_query_views"]) == (2, 2, 4)
    assert cat.pixels.shape == (6, 24, 24, 3)
    assert list(cat.items["sku"]) == ["a", "b"] and "brand" in cat.items
    first = cat.images([0])[0]
    assert first[12, 12, 0] > 200 and first[12, 12, 2] < 50  # item a is red
    assert not cat.items["cold"].any()


def _edit(folder, **changes):
    images = pd.read_csv(folder / "images.csv")
    for column, (row, value) in changes.items():
        images.loc[row, column] = value
    images.to_csv(folder / "images.csv", index=False)


@pytest.mark.parametrize("change,message", [
    ({"path": (1, "img/missing.png")}, "missing, e.g. \\['img/missing.png'\\]"),
    ({"item_id": (1, "zzz")}, "unknown item_id\\(s\\) \\['zzz'\\]"),
    ({"kind": (1, "selfie")}, "bad kind value\\(s\\) \\['selfie'\\]"),
    ({"split": (1, "holdout")}, "need split train/val/test"),
])
def test_bad_folder_input_is_named(kit_home, folder, change, message):
    _edit(folder, **change)
    with pytest.raises(DataError, match=message):
        data.catalogue(source=folder)


def test_corrupt_image_is_named(kit_home, folder):
    (folder / "img" / "a1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*a1.png"):
        data.catalogue(source=folder)


def test_item_without_training_queries_is_cold(kit_home, folder):
    _edit(folder, split=(4, "val"))  # b's only train query becomes val
    cat = data.catalogue(source=folder, render={"image_size": 16})
    assert cat.items.set_index("sku")["cold"].to_dict() == {"a": False, "b": True}
    assert np.asarray(cat.pixels).dtype == np.uint8
