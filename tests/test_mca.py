"""The cascade: its contracts, recall channels and indexes (catalogue views or fused SKU vectors)."""

import numpy as np
import pytest
from conftest import fake_world

from ovkit import fusion, mca

MCA = mca.MCAConfig(recall=40, prerank=20)


def _test_photos(cat):
    return cat.views[(cat.views["kind"] == "query") & (cat.views["split"] == "test")]["view_id"]


@pytest.fixture(scope="module")
def fake():
    return fake_world()


def test_fused_index_ranks_skus_by_their_fused_vector(fake):
    cat, emb, _ = fake
    fused = mca.Cascade(cat, emb, mca.MCAConfig(recall=40, prerank=20, vectors="fused", sibling_expand=0))
    vectors = fusion.item_vectors(cat, emb)
    np.testing.assert_allclose(fused.item_vectors, vectors)
    queries = emb[_test_photos(cat).to_numpy()[:25]]
    items, scores = fused.recall.search(queries, 10)
    expected = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]
    assert (items[:, 0] == expected[:, 0]).all()
    expected_scores = np.take_along_axis(queries @ vectors.T, items, 1)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_catalogue_index_scores_a_sku_by_its_best_catalogue_view(fake):
    cat, emb, _ = fake
    cascade = mca.Cascade(cat, emb, mca.MCAConfig(recall=40, prerank=20, sibling_expand=0))
    views = cat.catalog_views()
    query = emb[_test_photos(cat).to_numpy()[:1]]
    sims = (query @ emb[views["view_id"].to_numpy()].T)[0]
    best = {}
    for item, s in zip(views["item_id"], sims, strict=True):
        best[item] = max(best.get(item, -np.inf), s)
    items, _ = cascade.recall.search(query, 5)
    assert list(items[0]) == sorted(best, key=lambda i: -best[i])[:5]


def test_given_fused_vectors_are_used_as_they_are(fake):
    cat, emb, _ = fake
    given = np.random.default_rng(0).normal(size=(len(cat.items), emb.shape[1])).astype(np.float32)
    cfg = mca.MCAConfig(recall=40, prerank=20, vectors="fused")
    cascade = mca.Cascade(cat, emb, cfg, fused_vectors=given)
    np.testing.assert_array_equal(cascade.item_vectors, given)


def test_vectors_setting_is_validated():
    with pytest.raises(ValueError, match="MCA vectors must be 'catalogue' or 'fused'"):
        mca.MCAConfig.from_overrides({"vectors": "both"})


def test_offline_eval_on_validation_sessions(fake):
    cat, emb, logs = fake
    cascade = mca.Cascade(cat, emb, MCA).fit(logs.train_log, logs.train_histories)
    table, stages, _ = mca.offline_eval(cascade, logs, split="val")
    assert stages["rank"].shape == (len(logs.val_sessions), 10)
    assert set(stages) == {"recall", "prerank", "rank", "visual_only"}
    assert list(table.index) == ["visual_only", "mca"]
    assert stages["visual_only"].shape == stages["rank"].shape
    cold, cold_stages, _ = mca.offline_eval(cascade, logs, split="cold_test")  # the new-product slice
    assert cold_stages["rank"].shape == (len(logs.cold_test_sessions), 10)
    with pytest.raises(ValueError, match="split must be one of test, val, cold_test, cold_val"):
        mca.offline_eval(cascade, logs, split="train")


def test_runner_answers_one_query_or_a_slice_as_rank_does(fake):
    cat, emb, logs = fake
    cascade = mca.Cascade(cat, emb, MCA).fit(logs.train_log, logs.train_histories)
    test = logs.test_sessions.head(6)
    views, hists = test["view_id"].to_numpy(), [logs.test_histories[s] for s in test["session"]]
    run = cascade.runner(views, hists)
    np.testing.assert_array_equal(run(3), cascade.rank(views[3:4], hists[3:4])["rank"])
    np.testing.assert_array_equal(run(slice(0, 6)), cascade.rank(views, hists)["rank"])


def test_cascade_returns_catalogue_skus_and_checks_its_input(fake):
    cat, emb, logs = fake
    cascade = mca.Cascade(cat, emb, MCA).fit(logs.train_log,
                                                                             logs.train_histories)
    test = logs.test_sessions
    stages = cascade.rank(test["view_id"].to_numpy(), [logs.test_histories[s] for s in test["session"]])
    for name, k in (("recall", 40), ("prerank", 20), ("rank", 10)):
        ranked = stages[name]
        assert ranked.shape == (len(test), k) and ranked.min() >= 0 and ranked.max() < len(cat.items)
        assert all(len(set(row)) == k for row in ranked)  # no SKU twice
    assert set(stages["rank"].ravel()) <= set(stages["prerank"].ravel())
    losses = mca.stage_loss(stages, test["ordered"].to_numpy())
    assert sum(losses.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="catalogue has 90 SKUs"):
        mca.Cascade(cat, emb, mca.MCAConfig(recall=100, prerank=20))
    bad = logs.train_log.assign(item_id=logs.train_log["item_id"] + 1000)
    with pytest.raises(ValueError, match="outside the catalogue"):
        mca.Cascade(cat, emb, MCA).fit(bad, logs.train_histories)
    with pytest.raises(ValueError, match="history references SKUs outside"):
        mca.Cascade(cat, emb, MCA).fit(logs.train_log, {**logs.train_histories, 0: [10_000]})
    with pytest.raises(ValueError, match="no history entry"):
        mca.Cascade(cat, emb, MCA).fit(logs.train_log, {})
    with pytest.raises(ValueError, match="prerank <= recall"):
        mca.MCAConfig.from_overrides({"recall": 20, "prerank": 30})


def test_recall_adds_the_other_colourways_of_the_best_matches(fake):
    cat, emb, logs = fake
    cascade = mca.Cascade(cat, emb, mca.MCAConfig(recall=12, prerank=10, sibling_expand=3))
    views = logs.test_sessions["view_id"].to_numpy()[:20]
    cand, scores = cascade.retrieve(views)
    visual, _ = cascade.recall.search(emb[views], 12)
    model = cat.items["model_id"].to_numpy()
    for row, top in zip(cand, visual, strict=True):
        siblings = set(cat.items[np.isin(model, model[top[:3]])]["item_id"])
        assert siblings <= set(row) and len(set(row)) == 12
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # still best first


def test_without_user_features_the_ranker_reads_no_history(fake):
    cat, emb, _ = fake
    assert {f for f in mca.Cascade(cat, emb, MCA).rank_features if f.startswith("hist_")}
    plain = mca.Cascade(cat, emb, mca.MCAConfig(recall=40, prerank=20, user_features=False))
    assert plain.rank_features == [f for f in mca.RICH if not f.startswith("hist_")]
