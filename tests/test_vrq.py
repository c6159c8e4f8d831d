"""VRQ semantic IDs: residual quantization against faiss, round trips, uniqueness, determinism, bad input."""


import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import fake_catalogue

from ovkit import fusion, recall, store, vrq

SMALL = {"levels": (8, 8), "opq_codes": 2, "opq_size": 8}  # a VRQ small enough for the fake catalogue


def test_error_falls_level_by_level_on_training_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    cfg = vrq.VRQConfig(levels=(8, 8, 8), opq_codes=0, alpha=0.0, consensus_levels=0)
    q = vrq.fit(x, np.zeros(500, int), x[:0], np.zeros(0, int), cfg, 0)
    codes = q.encode(x)
    errors = [((x - q.decode(codes, depth)) ** 2).sum(1).mean()
              for depth in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2] and errors[0] < (x**2).sum(1).mean()


def test_encode_decode_round_trip_is_exact_on_sums_of_codewords():
    """Vectors that are exact sums of well-separated codewords (two levels and a PQ tail) are
    encoded code for code and decoded exactly."""
    rng = np.random.default_rng(2)
    q = vrq.SemanticQuantizer(vrq.VRQConfig(levels=(4, 4), opq_codes=2, opq_size=4, alpha=0.0), 8, 0)
    q.codebooks = [rng.normal(size=(4, 8)).astype(np.float32) * scale for scale in (100, 10)]
    q.pq = rng.normal(size=(2, 4, 4)).astype(np.float32)
    q.rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0].astype(np.float32)
    truth = rng.integers(0, 4, size=(200, 4))
    x = q.decode(truth)
    np.testing.assert_array_equal(q.encode(x), truth)
    np.testing.assert_allclose(q.decode(q.encode(x)), x, atol=1e-3)


def test_fitted_round_trip_is_stable(fake_views):
    """Re-encoding a decoded SID gives the SID back (shallow codes at least), and saving/loading the
    quantizer changes nothing."""
    cat, emb = fake_views
    ids = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL))
    q = ids["quantizer"]
    x = ids["item_vectors"]
    codes = q.encode(x, vrq.category_labels(cat, "fine_type")[0])
    again = q.encode(recall.l2_normalise(q.decode(codes)), vrq.category_labels(cat, "fine_type")[0])
    assert (again[:, 0] == codes[:, 0]).mean() > 0.95


def test_opq_tail_decodes_what_it_encodes(fake_views):
    cat, emb = fake_views
    ids = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL))
    q = ids["quantizer"]
    assert np.allclose(q.rotation @ q.rotation.T, np.eye(len(q.rotation)), atol=1e-4)  # orthogonal
    x = ids["item_vectors"]
    codes = q.encode(x, vrq.category_labels(cat, "fine_type")[0])
    # the tail reduces the error left by the residual levels
    no_tail = q.decode(np.concatenate([codes[:, :2], np.zeros((len(x), 2), int)], 1)) - \
        q.decode(np.concatenate([np.zeros((len(x), 2), int), np.zeros((len(x), 2), int)], 1)) + \
        q.codebooks[0][0, : q.dim] + q.codebooks[1][0, : q.dim]
    assert ((x - q.decode(codes)) ** 2).sum() < ((x - no_tail) ** 2).sum()


@pytest.mark.parametrize("dedup", ["reassign", "append"])
def test_every_sku_unique_after_disambiguation(fake_views, dedup):
    cat, emb = fake_views
    tight = {"levels": (2, 2), "opq_codes": 1, "opq_size": 4, "dedup": dedup}  # 16 SIDs for 120 SKUs
    if dedup == "reassign":
        with pytest.raises(ValueError, match="code space holds 16 SIDs for 120 SKUs"):
            vrq.build_ids(cat, emb, vrq.VRQConfig(**tight))
        tight.update(levels=(8, 8), opq_size=16)
    ids = vrq.build_ids(cat, emb, vrq.VRQConfig(**tight))
    raw_unique = len({tuple(r) for r in ids["raw"]}) / len(ids["raw"])
    assert raw_unique < 1.0  # the budget is tight on purpose: there were collisions to resolve
    assert ids["unique_after_dedup"] == 1.0 and len({tuple(r) for r in ids["codes"]}) == len(cat.items)
    assert ids["n_moved"] > 0
    if dedup == "append":
        np.testing.assert_array_equal(ids["codes"][:, :-1], ids["raw"])


def test_disambiguate_keeps_existing_ids_and_the_closest_item():
    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 0]])
    dist = np.array([[5, 0.2, 1, 9], [5, 0.1, 3, 2], [5, 0.3, 0.4, 9], [0, 1, 1, 1]], float)
    out, moved, _ = vrq.disambiguate(codes, dist, "reassign")
    assert out[1].tolist() == [0, 1]  # closest to its code keeps it
    assert out[0].tolist() == [0, 2] and out[2].tolist() == [0, 0]  # next-nearest free codes
    assert moved.tolist() == [True, False, True, False]
    out, moved, _ = vrq.disambiguate(np.array([[1, 0]]), np.array([[0.0, 1, 2, 3]]), "reassign",
                                  taken={(1, 0): 1})
    assert out.tolist() == [[1, 1]] and moved.all()  # the existing SID does not move, the new one does
    out, _, _ = vrq.disambiguate(codes, dist, "append")
    assert sorted(out[:3, 2].tolist()) == [0, 1, 2] and out[3, 2] == 0


def test_same_seed_same_ids_other_seed_other_ids(fake_views):
    cat, emb = fake_views
    a = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, seed=3))
    b = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, seed=3))
    c = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, seed=4))
    np.testing.assert_array_equal(a["codes"], b["codes"])
    np.testing.assert_array_equal(a["quantizer"].rotation, b["quantizer"].rotation)
    assert not np.array_equal(a["codes"], c["codes"])


def test_cold_skus_get_ids_without_moving_warm_ones(fake_views):
    cat, emb = fake_views
    ids = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL))
    warm = ~cat.items["cold"].to_numpy()
    expected, _, _ = vrq.disambiguate(*ids["quantizer"].assign_items(
        ids["item_vectors"][warm], vrq.category_labels(cat, "fine_type")[0][warm],
        *_views(cat, emb, np.flatnonzero(warm))), "reassign")
    np.testing.assert_array_equal(ids["codes"][warm], expected)
    assert 0.0 <= ids["cold_collision_rate"] <= 1.0 and ids["unique_after_dedup"] == 1.0


def _views(cat, emb, rows):
    per_item = fusion.item_views(cat)
    ids = [per_item[i] for i in rows]
    return emb[np.concatenate(ids)], np.repeat(np.arange(len(rows)), [len(v) for v in ids])


def test_item_vectors_fuse_catalogue_and_training_queries(fake_views):
    cat, emb = fake_views
    catalogue_only = fusion.item_vectors(cat, emb, 0.0)
    view0 = cat.views[(cat.views["item_id"] == 0) & (cat.views["kind"] == "catalog")]["view_id"]
    np.testing.assert_allclose(catalogue_only[0], emb[view0].mean(0) / np.linalg.norm(emb[view0].mean(0)),
                               rtol=1e-5)
    fused = fusion.item_vectors(cat, emb, 0.5)
    cold = cat.items["cold"].to_numpy()
    np.testing.assert_allclose(fused[cold], catalogue_only[cold], rtol=1e-6)  # no training queries
    assert not np.allclose(fused[~cold], catalogue_only[~cold])


def test_category_injection_makes_level_one_type_pure(fake_views):
    cat, emb = fake_views
    base = {**SMALL, "levels": (4, 8)}
    with_cat = vrq.build_ids(cat, emb, vrq.VRQConfig(**base, alpha=3.0))
    types_ = vrq.category_labels(cat, "fine_type")[0]
    purity = pd.crosstab(with_cat["codes"][:, 0], types_).max(axis=1).sum() / len(types_)
    assert purity == 1.0  # a strong injection: one type per level-1 code


def test_balanced_level_respects_capacity():
    rng = np.random.default_rng(5)
    dist = rng.random((50, 8)) + np.where(np.arange(8) == 0, 0, 1)  # everybody prefers code 0
    codes = vrq._balanced_assign(dist)
    assert np.bincount(codes, minlength=8).max() <= 7 and (codes >= 0).all()


# --------------------------------------------------------------------------- bad input


def test_bad_embeddings_are_named(fake_views):
    cat, emb = fake_views
    broken = emb.copy()
    broken[3] = np.nan
    broken[7] = 0
    with pytest.raises(ValueError, match="2 of .* vectors are NaN, infinite or all zero"):
        vrq.build_ids(cat, broken, vrq.VRQConfig(**SMALL))


def test_missing_category_column(fake_views):
    cat, emb = fake_views
    with pytest.raises(ValueError, match="no column 'colour_family'.*alpha=0"):
        vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, category_column="colour_family"))
    vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, category_column="colour_family", alpha=0.0))


def test_more_codes_than_the_data_can_fill(fake_views):
    cat, emb = fake_views
    with pytest.raises(ValueError, match="asks for 256 codes but only 108 SKUs"):
        vrq.build_ids(cat, emb, vrq.VRQConfig(levels=(256,), opq_codes=0))
    with pytest.warns(UserWarning, match="fewer than 2 SKUs per code"):
        vrq.build_ids(cat, emb, vrq.VRQConfig(levels=(64,), opq_codes=0, dedup="append"))


@pytest.mark.parametrize("override,message", [({"levels": [8, 12]}, "powers of two"),
                                              ({"dedup": "drop"}, "dedup"),
                                              ({"nlevels": 3}, "unknown VRQ setting")])
def test_bad_config(override, message):
    with pytest.raises(ValueError, match=message):
        vrq.VRQConfig.from_overrides(override)


def test_ids_refuse_another_catalogue(kit_home, fake_views):
    cat, emb = fake_views
    ids = vrq.semantic_ids(cat, emb, cat.artifact, vrq.VRQConfig.from_overrides(SMALL))
    again = vrq.semantic_ids(cat, emb, cat.artifact, vrq.VRQConfig.from_overrides(SMALL))
    assert not again.artifact.fresh and np.array_equal(ids.codes, again.codes)
    assert len(ids.table(cat)) == len(cat.items)
    other, _ = fake_catalogue(n_models=41)
    with pytest.raises(ValueError, match="built for another catalogue"):
        vrq.load_ids(ids.artifact, other)


def test_every_vrq_setting_is_in_the_cache_key(fake_views, monkeypatch):
    """The stage is keyed on its whole settings dataclass: a new field cannot be left out silently."""
    cat, emb = fake_views
    seen = {}

    def cached(stage, params, build, **kwargs):
        seen.update(params)
        raise LookupError("stop before building")

    monkeypatch.setattr(store, "cached", cached)
    with pytest.raises(LookupError):
        vrq.semantic_ids(cat, emb, cat.artifact, vrq.VRQConfig.from_overrides(SMALL))
    assert {f.name for f in dataclasses.fields(vrq.VRQConfig)} <= set(seen)


def _colourway_pairs(cat):
    model = cat.items["model_id"].to_numpy()
    return [(a, b) for a in range(len(model)) for b in range(a + 1, len(model)) if model[a] == model[b]]


def test_shape_first_layout_gives_colourways_every_code_but_the_last(fake_views):
    cat, emb = fake_views
    per_sku = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL))
    shape = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, layout="shape_first"))
    assert len({tuple(r) for r in shape["codes"]}) == len(cat.items)  # still one SID per SKU
    pairs = np.array(_colourway_pairs(cat))
    same_prefix = (shape["codes"][pairs[:, 0], :-1] == shape["codes"][pairs[:, 1], :-1]).all(1)
    assert same_prefix.mean() > 0.9  # all but pairs whose prefix ran out of last codes
    assert vrq.colourway_prefix_share(cat, shape["codes"], 3) == pytest.approx(same_prefix.mean())
    assert vrq.colourway_prefix_share(cat, per_sku["codes"], 3) < same_prefix.mean()
    # the output prior still reads each SKU's own vector, not its model's
    np.testing.assert_array_equal(shape["item_vectors"], per_sku["item_vectors"])


def test_by_model_means_and_pools_the_views_of_a_models_colourways():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    per_item = [np.array([0, 1]), np.array([2]), np.array([3])]
    coded, views = vrq.by_model(vectors, per_item, np.array([7, 7, 9]))
    np.testing.assert_allclose(coded, [[0.7071068, 0.7071068]] * 2 + [[1.0, 0.0]], rtol=1e-6)
    assert [v.tolist() for v in views] == [[0, 1, 2], [0, 1, 2], [3]]


def test_random_layout_ids_ignore_the_images_but_the_prior_does_not(fake_views):
    cat, emb = fake_views
    rng = np.random.default_rng(5)
    other = rng.normal(size=emb.shape).astype(emb.dtype)  # entirely different images
    random_ids = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, layout="random"))
    assert len({tuple(r) for r in random_ids["codes"]}) == len(cat.items)  # still one SID per SKU
    again = vrq.build_ids(cat, other, vrq.VRQConfig(**SMALL, layout="random"))
    np.testing.assert_array_equal(random_ids["codes"], again["codes"])  # the codes never read the images
    reseeded = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL, layout="random", seed=1))
    assert (reseeded["codes"] != random_ids["codes"]).any()
    per_sku = vrq.build_ids(cat, emb, vrq.VRQConfig(**SMALL))
    np.testing.assert_array_equal(random_ids["item_vectors"], per_sku["item_vectors"])
    assert (per_sku["codes"] != vrq.build_ids(cat, other, vrq.VRQConfig(**SMALL))["codes"]).any()
