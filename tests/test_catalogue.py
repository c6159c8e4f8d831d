"""Building catalogues from the tiny fixture library: determinism, skips, splits, bad input."""

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL

from ovkit import cli, data, store
from ovkit.data import RenderConfig, folder, render


def test_counts_and_tables(built):
    s = built.summary()
    assert s["n_models"] == 3 and s["n_skus"] == 6
    assert s["n_query_views"] == 6 * (4 + 2 * (2 + 5))  # + per held-out family: 2 with all, 1 per factor
    assert (s["n_heldout_val_views"], s["n_heldout_test_views"]) == (6 * 7, 6 * 7)
    # one rendered catalogue view per SKU, plus the real icon of each model's first colourway
    assert s["n_catalog_views"] == 6 + 3
    assert built.pixels.shape[1:] == (32, 32, 3) and built.pixels.dtype == np.uint8
    assert set(built.items["category"]) <= {"Living room", "Lights", "Bedroom", "Kitchen"}
    assert (built.items.groupby("model_id")["colour"].nunique() == 2).all()
    assert (built.items["price"] > 0).all()


def test_broken_model_is_skipped_and_reported(kit_home, tiny_sh3f):
    cat = data.catalogue(source=tiny_sh3f, workers=1, **{**SMALL, "n_models": 0})
    assert cat.summary()["n_models"] == 4  # five products, one with a garbage mesh
    assert [s["name"] for s in cat.meta["skipped"]] == ["Broken stool"]
    assert "Front door" not in set(cat.items["name"])


def test_same_parameters_give_identical_bytes_whatever_the_workers(built, tiny_sh3f):
    again = data.catalogue(source=tiny_sh3f, workers=2, rebuild=True, **SMALL)
    assert again.key == built.key
    assert np.array_equal(np.asarray(again.pixels), np.asarray(built.pixels))
    assert again.views.equals(built.views) and again.items.equals(built.items)


def test_other_seed_changes_views(built, tiny_sh3f):
    other = data.catalogue(source=tiny_sh3f, workers=1, **{**SMALL, "seed": 2})
    assert other.key != built.key
    assert not np.array_equal(np.asarray(other.pixels), np.asarray(built.pixels))


def test_splits_are_disjoint_and_cold_skus_never_train(built):
    q = built.query_views()
    assert q["view_id"].is_unique
    assert set(built.catalog_views()["split"]) == {"catalog"}
    seen = q[q["changed"] == "none"]
    assert set(seen["split"]) == {"train", "val", "test"}
    cold = built.items.loc[built.items["cold"], "item_id"]
    assert len(cold) == 2
    for _, group in seen[seen["item_id"].isin(cold)].groupby("item_id"):
        assert sorted(group["split"]) == ["test", "test", "val", "val"]  # halved, never train
    warm = seen[~seen["item_id"].isin(cold)]
    for _, group in warm.groupby("item_id"):
        assert sorted(group["split"]) == ["test", "train", "train", "val"]


def test_heldout_photos_change_one_factor_or_all(built):
    q = built.query_views()
    held = q[q["changed"] != "none"]
    assert set(held["split"]) == {"heldout_val", "heldout_test"}
    for _, group in held.groupby("item_id"):
        counts = group.groupby(["split", "changed"]).size().to_dict()
        alone = {(f"heldout_{family}", f): 1 for f in render.FACTORS for family in ("val", "test")}
        assert counts == {("heldout_val", "all"): 2, ("heldout_test", "all"): 2, **alone}
    assert set(built.heldout_views("val")["split"]) == {"heldout_val"}
    assert len(built.heldout_views("test", "lighting")) == 6 and built.has_heldout
    backgrounds = set(held.loc[held["changed"].isin(["all", "background"]), "background"])
    assert backgrounds <= set(RenderConfig().val_backgrounds + RenderConfig().test_backgrounds)
    assert not backgrounds & set(RenderConfig().backgrounds)  # held-out textures never meet training


def test_heldout_photos_leave_the_others_untouched(built, tiny_sh3f):
    """The same catalogue without held-out photos has bit-identical training/val/test photos and splits."""
    plain = data.catalogue(source=tiny_sh3f, workers=1, **{
        **SMALL, "render": {**SMALL["render"], "heldout_views": 0, "factor_views": 0}})
    assert not plain.has_heldout and set(plain.views["changed"]) == {"none"}
    seen = built.views[built.views["changed"] == "none"].reset_index(drop=True)
    np.testing.assert_array_equal(np.asarray(plain.pixels), np.asarray(built.pixels[seen["view_id"]]))
    assert plain.views["split"].tolist() == seen["split"].tolist()


def test_query_views_differ_from_catalog_views(built):
    catalog = built.images(built.catalog_views()["view_id"]).astype(float)
    query = built.images(built.query_views()["view_id"]).astype(float)
    assert (catalog > 250).mean() > 0.3  # white shop background
    assert (query > 250).mean() < 0.2  # textured backgrounds


def test_unknown_render_setting_names_the_valid_ones(kit_home, tiny_sh3f):
    with pytest.raises(ValueError, match="valid names: image_size"):
        data.catalogue(source=tiny_sh3f, render={"occlusion": 0.5})
    assert RenderConfig.from_overrides({"occlusion_prob": 0.0}).occlusion_prob == 0.0


def test_too_many_models_is_a_clear_error(kit_home, tiny_sh3f):
    with pytest.raises(ValueError, match="only 5 product models"):
        data.catalogue(source=tiny_sh3f, workers=1, **{**SMALL, "n_models": 50})


def test_interrupted_build_leaves_nothing_readable(kit_home, tiny_sh3f, monkeypatch):
    from ovkit.data import build as build_module

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    original = build_module.assign_splits
    monkeypatch.setattr(build_module, "assign_splits", explode)
    with pytest.raises(KeyboardInterrupt):
        data.catalogue(source=tiny_sh3f, workers=1, **SMALL)
    root = kit_home / "artifacts" / "catalogue"
    left = [p for p in root.iterdir() if not p.name.startswith(".lock-")]  # the empty build lock may stay
    assert left == []  # neither a partial artifact nor a temp folder
    # restore only the patched function: monkeypatch.undo() would also undo kit_home's folders, so the
    # rebuild and clean_partial below would touch the user's real stage cache (and delete a build in progress)
    monkeypatch.setattr(build_module, "assign_splits", original)
    assert data.catalogue(source=tiny_sh3f, workers=1, **SMALL).summary()["n_skus"] == 6
    assert store.clean_partial() == 0
    assert list(root.iterdir()) != []  # the rebuild went to the test's own cache


def test_export_folder_round_trips(built, tmp_path):
    out = folder.export(built, tmp_path / "exported")
    back = data.catalogue(source=out, render={"image_size": built.pixels.shape[1]})
    assert not back.rendered and back.key != built.key
    np.testing.assert_array_equal(np.asarray(back.pixels), np.asarray(built.pixels))
    for column in ("sku", "category", "fine_type", "colour", "creator", "model_id", "cold"):
        assert back.items[column].tolist() == built.items[column].tolist(), column
    assert back.items["price"].to_numpy() == pytest.approx(built.items["price"].to_numpy())
    columns = ["item_id", "kind", "split", "changed"]
    pd.testing.assert_frame_equal(back.views[columns], built.views[columns])
    with pytest.raises(FileExistsError, match="not empty"):
        folder.export(built, out)


def test_export_folder_command_writes_a_valid_dataset(kit_home, tiny_sh3f, tmp_path, capsys):
    out = tmp_path / "shop"
    args = ["export-folder", str(out), "--profile", "smoke", "-p", f"DATA_SOURCE={tiny_sh3f}",
            "-p", "N_MODELS=3", "-p", "QUERY_VIEWS=3", "-p", "RENDER={render_size: 64, image_size: 32}"]
    assert cli.main(args) == 0
    assert f"DATA_SOURCE={out}" in capsys.readouterr().out
    items, images = folder.validate(out, open_images=True)
    assert len(items) == 6 and (images["kind"] == "catalog").sum() >= 6
