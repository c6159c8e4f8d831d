"""Augmented training photos (stage ``augment``) and how the alignment head's sampler uses them."""

import numpy as np
import pytest

from ovkit import align, augment, backbone


@pytest.fixture
def cat(built):
    return built


def test_plan_covers_training_photos_and_warm_catalogue_images(cat):
    table = augment.plan(cat, copies=2)
    train = cat.query_views("train")["view_id"]
    photos = table[~table["composite"]]
    assert sorted(photos["view_id"]) == sorted(list(train) * 2)
    composites = table[table["composite"]]
    cold = set(cat.items.loc[cat.items["cold"], "item_id"])
    assert len(composites) and not set(composites["item_id"]) & cold  # cold SKUs stay unseen
    assert set(cat.views.loc[composites["view_id"], "kind"]) == {"catalog"}
    assert augment.usable(table, ("photometric",)).tolist() == (~table["composite"]).tolist()
    assert augment.usable(table, ("background",)).tolist() == table["composite"].tolist()


def test_augmented_photos_are_seeded_and_new(cat):
    table = augment.plan(cat, copies=1)
    images = augment.AugmentedImages(cat, table, augment.KINDS, ("brick",), seed=0)
    a, b = images[0:6], images[0:6]
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cat.images(table["view_id"][:6]))
    other = augment.AugmentedImages(cat, table, augment.KINDS, ("brick",), seed=1)[0:6]
    assert not np.array_equal(a, other)


def test_randomised_copies_draw_no_loaded_background(cat, monkeypatch):
    """Domain randomisation: seeded copies whose backgrounds are drawn, never loaded — so no held-out
    (validation or test) texture can reach training through them — and usable rows for the sampler."""
    from ovkit.data import render

    def loaded(*args):
        raise AssertionError("a randomised copy loaded a texture")

    monkeypatch.setattr(render, "background_patch", loaded)
    table = augment.plan(cat, copies=1)
    rows = table.iloc[np.r_[0:3, np.flatnonzero(table["composite"])[:3]]]
    images = augment.AugmentedImages(cat, rows, (augment.RANDOMISED,), ("brick",), seed=0)
    a = images[0 : len(rows)]
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, images[0 : len(rows)])
    assert not np.array_equal(a, augment.AugmentedImages(cat, rows, (augment.RANDOMISED,), (), seed=1)[0:6])
    assert augment.usable(table, (augment.RANDOMISED,)).all()
    texture = augment.procedural_texture(64, np.random.default_rng(3))
    assert texture.shape == (64, 64, 3) and texture.dtype == np.float32
    assert 0.0 <= texture.min() and texture.max() <= 1.0
    np.testing.assert_array_equal(texture, augment.procedural_texture(64, np.random.default_rng(3)))


def test_randomised_cut_outs_keep_the_product_and_change_the_white():
    image = np.full((64, 64, 3), 255, np.uint8)
    image[16:48, 16:48] = (200, 0, 0)
    kept = [augment.randomise(image, True, np.random.default_rng(seed)) for seed in range(8)]
    for out in kept:
        assert out.shape == image.shape and out.dtype == np.uint8
    # the background is no longer shop white, and the red product is still there in most copies
    assert np.mean([(out[:4, :4] < 235).any() for out in kept]) > 0.5
    assert np.mean([(out[..., 0].astype(int) - out[..., 1] > 80).mean() > 0.05 for out in kept]) > 0.5


def test_cut_out_replaces_only_the_white_around_the_product():
    image = np.full((20, 20, 3), 255, np.uint8)
    image[5:15, 5:15] = (200, 0, 0)
    image[9:11, 9:11] = 255  # a white part inside the product
    out = augment.on_background(image, ("brick",), np.random.default_rng(0))
    np.testing.assert_array_equal(out[5:15, 5:15], image[5:15, 5:15])  # product and its white part kept
    assert (out[:5] != 255).any(-1).mean() > 0.9  # the shop's white is now texture


def test_augment_stage_caches_maps_and_the_head_samples_them(cat):
    maps, artifact = backbone.cached_maps(cat)
    made = augment.augmented(cat, artifact, ("photometric", "background"), copies=1)
    assert made.maps.shape == (len(made.table), *maps.shape[1:])
    assert not augment.augmented(cat, artifact, ("photometric", "background"), copies=1).artifact.fresh
    cfg = align.AlignConfig(batch_models=3, augment_prob=1.0, query_item_share=1.0)
    sampler = align.PairSampler(cat, cfg, made.table, offset=len(maps))
    ids, labels = sampler.batch()
    anchors = ids[: len(ids) // 2]
    assert (anchors >= len(maps)).all()  # every anchor is an augmented photo
    assert (made.table["item_id"].to_numpy()[anchors - len(maps)] == labels[: len(ids) // 2]).all()
    stacked = align.gather(maps, made.maps, ids)
    np.testing.assert_array_equal(stacked[: len(anchors)], made.maps[anchors - len(maps)])
    np.testing.assert_array_equal(stacked[len(anchors):], maps[ids[len(anchors):]])
    with pytest.raises(ValueError, match=r"unknown augmentation kind\(s\) \['rotate'\]"):
        augment.augmented(cat, artifact, ("rotate",))


@pytest.mark.parametrize("select_on,names", [("val", ["val"]), ("heldout", ["heldout_val"]),
                                             ("both", ["val", "heldout_val"])])
def test_checkpoint_selection_photos(cat, select_on, names):
    views = align.selection_views(cat, select_on)
    assert list(views) == names
    if "heldout_val" in views:
        assert set(cat.views.loc[views["heldout_val"], "split"]) == {"heldout_val"}
    with pytest.raises(ValueError, match="select_on must be"):
        align.selection_views(cat, "test")
