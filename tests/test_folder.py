"""Bring-your-own dataset folders: a valid one builds, each kind of bad input is named."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ovkit import data
from ovkit.data import DataError
from ovkit.data.folder import validate


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "shop"
    (root / "img").mkdir(parents=True)
    rows = []
    for item in ("a", "b"):
        for k, (kind, split) in enumerate([("catalog", ""), ("query", "train"), ("query", "test"),
                                           ("query", "val")]):
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
    assert (s["n_skus"], s["n_catalog_views"], s["n_query_views"]) == (2, 2, 6)
    assert cat.pixels.shape == (8, 24, 24, 3)
    assert not cat.rendered
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


def test_corrupt_images_are_all_named_at_once(kit_home, folder):
    (folder / "img" / "a1.png").write_bytes(b"not a png")
    png = (folder / "img" / "b2.png").read_bytes()
    (folder / "img" / "b2.png").write_bytes(png[: len(png) // 2])  # truncated
    for call in (lambda: validate(folder, open_images=True), lambda: data.catalogue(source=folder)):
        with pytest.raises(DataError, match=r"(?s)2 image file\(s\) cannot be read.*a1.png.*b2.png"):
            call()


def test_every_problem_is_listed_in_one_error(kit_home, folder):
    _edit(folder, item_id=(1, "zzz"), kind=(2, "selfie"), path=(3, "img/gone.png"))
    with pytest.raises(DataError) as err:
        data.catalogue(source=folder)
    text = str(err.value)
    assert "3 problem(s)" in text and "zzz" in text and "selfie" in text and "gone.png" in text
    assert not (kit_home / "artifacts" / "catalogue").exists()  # nothing was hashed or built


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "images.csv").unlink(), "images.csv is missing"),
    (lambda f: (f / "items.csv").write_text(""), "items.csv cannot be read as CSV"),
    (lambda f: (f / "items.csv").write_text("item_id,category\n"), "items.csv has a header but no rows"),
    (lambda f: (f / "images.csv").write_text("file,item\nx.png,a\n"), "images.csv lacks column"),
])
def test_missing_or_empty_tables_are_named(kit_home, folder, damage, message):
    damage(folder)
    with pytest.raises(DataError, match=message):
        data.catalogue(source=folder)


def test_a_split_without_photos_is_named(kit_home, folder):
    images = pd.read_csv(folder / "images.csv")
    images.loc[images["split"] == "val", "split"] = "train"
    images.to_csv(folder / "images.csv", index=False)
    with pytest.raises(DataError, match=r"no query image in split\(s\) \['val'\]"):
        data.catalogue(source=folder)


def test_minimal_columns_get_stand_ins(kit_home, folder):
    minimal = pd.DataFrame({"item_id": ["a", "b"], "category": ["cup", "mug"]})
    minimal.to_csv(folder / "items.csv", index=False)
    items = data.catalogue(source=folder, render={"image_size": 16}).items
    assert list(items["fine_type"]) == ["cup", "mug"] and list(items["model_id"]) == [0, 1]
    assert set(items["creator"]) == {"unknown"} and set(items["price"]) == {1.0}


def test_item_without_training_queries_is_cold(kit_home, folder):
    _edit(folder, split=(5, "val"))  # b's only train query becomes val
    cat = data.catalogue(source=folder, render={"image_size": 16})
    assert cat.items.set_index("sku")["cold"].to_dict() == {"a": False, "b": True}
    assert np.asarray(cat.pixels).dtype == np.uint8


def test_truncated_pixels_are_rebuilt_not_loaded(kit_home, folder, capsys):
    first = data.catalogue(source=folder, render={"image_size": 16})
    pixels = first.artifact / "pixels.npy"
    pixels.write_bytes(pixels.read_bytes()[:100])
    again = data.catalogue(source=folder, render={"image_size": 16})
    assert again.artifact.fresh and again.pixels.shape == first.pixels.shape
    assert "pixels.npy has 100 bytes" in capsys.readouterr().out


def test_heldout_splits_are_optional_and_say_what_changed(kit_home, folder):
    _edit(folder, split=(2, "heldout_test"))
    images = pd.read_csv(folder / "images.csv")
    images["changed"] = ""
    images.loc[3, ["split", "changed"]] = ["heldout_val", "lighting"]
    images.to_csv(folder / "images.csv", index=False)
    cat = data.catalogue(source=folder, render={"image_size": 24})
    assert cat.views.loc[2, ["split", "changed"]].tolist() == ["heldout_test", "all"]  # the default
    assert cat.views.loc[3, ["split", "changed"]].tolist() == ["heldout_val", "lighting"]
    usual = cat.views["split"].isin(["train", "test", "val", "catalog"])
    assert set(cat.views.loc[usual, "changed"]) == {"none"}
    assert len(cat.heldout_views("test")) == 1


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "system"])
def test_image_paths_outside_the_folder_are_refused(kit_home, folder, where):
    """The fingerprint covers only the folder's files: an outside file could change unnoticed."""
    outside = folder.parent / "outside.png"
    Image.new("RGB", (30, 30), (0, 255, 0)).save(outside)  # a valid image: refused for where it is
    (folder / "img" / "link.png").symlink_to(outside)
    path = {"parent": "../outside.png", "absolute": str(outside), "symlink": "img/link.png",
            "system": "../" * 12 + "etc/passwd"}[where]
    _edit(folder, path=(1, path))
    with pytest.raises(DataError, match=r"1 image path\(s\) lead outside the dataset folder") as err:
        validate(folder, open_images=True)
    assert "1 problem(s)" in str(err.value) and "cannot be read" not in str(err.value)  # never opened


@pytest.mark.parametrize("row,path,message", [
    (2, "img/a1.png", r"query photos in several splits, e.g. \['img/a1.png \(test, train\)'\]"),
    (2, "./img/../img/a1.png", r"query photos in several splits"),  # another spelling of the same file
    (3, "img/a0.png", r"both a catalog image and a query photo, e.g. \['img/a0.png \(catalog, query\)'\]"),
    (5, "img/a1.png", r"listed under several item_ids, e.g. \['img/a1.png \(a, b\)'\]"),
])
def test_an_image_file_in_two_roles_is_named(kit_home, folder, row, path, message):
    _edit(folder, path=(row, path))
    with pytest.raises(DataError, match=message):
        data.catalogue(source=folder)


def test_a_symlink_to_a_listed_image_is_the_same_file(kit_home, folder):
    (folder / "img" / "alias.png").symlink_to(folder / "img" / "b2.png")
    _edit(folder, path=(7, "img/alias.png"))  # b's val photo is b's test photo
    with pytest.raises(DataError, match=r"several splits, e.g. \['img/b2.png \(test, val\)'\]"):
        validate(folder)


def test_a_symlink_loop_is_a_missing_file(kit_home, folder):
    (folder / "img" / "loop.png").symlink_to("loop.png")
    _edit(folder, path=(1, "img/loop.png"))
    with pytest.raises(DataError, match=r"1 image file\(s\) missing, e.g. \['img/loop.png'\]"):
        validate(folder)


def test_a_repeated_row_is_named(kit_home, folder):
    _edit(folder, path=(2, "img/a1.png"), split=(2, "train"))
    with pytest.raises(DataError, match=r"1 image file\(s\) are listed more than once, e.g. \['img/a1"):
        validate(folder)


@pytest.mark.parametrize("split,lacking", [("heldout_test", "heldout_val"), ("heldout_val", "heldout_test")])
def test_one_heldout_split_without_the_other_is_named(kit_home, folder, split, lacking):
    _edit(folder, split=(2, split))
    with pytest.raises(DataError, match=f"split {split} but none {lacking}"):
        data.catalogue(source=folder)


def test_reuse_outside_paths_and_heldout_are_listed_together(kit_home, folder):
    _edit(folder, path=(1, "../x.png"), split=(2, "heldout_test"))
    _edit(folder, path=(6, "img/b1.png"))  # b's test photo is b's train photo
    with pytest.raises(DataError) as err:
        validate(folder)
    text = str(err.value)
    assert "3 problem(s)" in text and "outside" in text and "several splits" in text and "heldout_val" in text
