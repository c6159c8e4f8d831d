"""Notebook 04's diagnostics: target types, HR@10 per type, swapped user contexts (hand-made cases)."""

import types

import numpy as np
import pandas as pd
import pytest
from conftest import fake_catalogue

from ovkit import diagnose, gen, mca, metrics, sim

CAT = types.SimpleNamespace(items=pd.DataFrame({"model_id": [0, 0, 1, 1, 2]}))
SESSIONS = pd.DataFrame({"session": [10, 11, 12, 13, 14, 15], "user": [0, 0, 1, 1, 2, 2],
                         "intent": [0, 0, 2, 2, 4, 4], "ordered": [0, 1, 2, 4, 4, 4]})


def test_target_types_by_hand():
    kinds = diagnose.target_types(CAT, SESSIONS)
    assert kinds.tolist() == ["photographed", "colourway", "photographed", "other_product",
                              "photographed", "photographed"]


def test_hr_by_target_type_counts_by_hand():
    kinds = diagnose.target_types(CAT, SESSIONS)
    lists = np.array([[0, 3], [3, 2], [1, 2], [0, 1], [3, 1], [4, 0]])  # hits: 1, 0, 1, 0, 0, 1
    table = diagnose.hr_by_target_type({"a": lists}, SESSIONS, kinds, k=2)
    assert table.loc[("a", "photographed"), "hr@2"] == pytest.approx(3 / 4)
    assert table.loc[("a", "colourway"), "hr@2"] == 0.0
    assert table.loc[("a", "other_product"), "hr@2"] == 0.0
    assert table["sessions"].tolist() == [4, 1, 1]
    assert table.loc[("a", "colourway"), ["95% low", "95% high"]].isna().all()  # one user: no interval
    photographed = table.loc[("a", "photographed")]
    assert photographed["95% low"] <= photographed["hr@2"] <= photographed["95% high"]
    users = SESSIONS["user"].to_numpy()[kinds == "photographed"]
    expected = metrics.cluster_mean_ci(np.array([1.0, 1.0, 0.0, 1.0]), users)
    assert tuple(photographed[["hr@2", "95% low", "95% high"]]) == pytest.approx(expected)


def test_history_contexts_give_every_user_someone_elses_history():
    hists = {10: [1], 11: [1, 3], 12: [2], 13: [2], 14: [4], 15: [0]}
    contexts = diagnose.history_contexts(SESSIONS, hists, seed=3)
    assert contexts["own"] == [[1], [1, 3], [2], [2], [4], [0]]
    assert contexts["none"] == [[]] * 6
    swapped = contexts["another_user"]
    firsts = {0: [1], 1: [2], 2: [4]}  # each user's first session's history
    given = {user: swapped[i] for i, user in enumerate(SESSIONS["user"])}
    assert sorted(map(tuple, given.values())) == sorted(map(tuple, firsts.values()))  # a permutation
    assert all(given[user] != firsts[user] for user in firsts)  # nobody keeps their own
    assert diagnose.history_contexts(SESSIONS, hists, seed=3) == contexts  # seeded
    with pytest.raises(ValueError, match="at least two users"):
        diagnose.history_contexts(SESSIONS[SESSIONS["user"] == 0], hists)


def test_serving_contexts_runs_both_systems_on_the_same_photos():
    cat, emb = fake_catalogue(n_models=12, colourways=2, query_views=6)
    cascade = mca.Cascade(cat, emb, mca.MCAConfig(recall=20, prerank=10))
    world = sim.SimConfig(n_users=6, train_sessions=8, test_sessions=2, explore_pool=10)
    logs = sim.simulate(cat, emb, world, retrieve=cascade.retrieve)
    cascade.fit(logs.train_log, logs.train_histories)
    test, hists = logs.sessions("test")
    tokens = np.repeat(emb[:, None, :], 2, axis=1)
    codes = np.stack([np.arange(len(cat.items)) // 6, np.arange(len(cat.items)) % 6], 1)
    first_view = cat.catalog_views().groupby("item_id")["view_id"].first().to_numpy()
    cfg = gen.GenConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=1, history=4, beam=10)
    model = gen.OneVision(cfg, gen.Trie(codes, (4, 6)), emb[first_view], 2).eval()
    contexts = diagnose.history_contexts(test, hists)
    views = test["view_id"].to_numpy()
    ranked = diagnose.serve_contexts(model, cascade, emb, tokens, views, contexts, 4, k=5, beam=10)
    assert set(ranked) == {(system, c) for system in ("onevision", "cascade") for c in contexts}
    assert all(lists.shape == (len(test), 5) and (lists >= 0).all() for lists in ranked.values())
    own = cascade.rank(views, contexts["own"], 5)["rank"]
    np.testing.assert_array_equal(ranked[("cascade", "own")], own)


def _order_weights(world, intent, user):
    """What offline_targets draws a session's order from, one session at a time."""
    everything = np.arange(len(world.items))
    return world.relevance(np.array(intent), everything) * world.appeal[user] * world.price_fit[user]


def test_oracles_rank_by_the_simulators_own_order_probability():
    cat, emb = fake_catalogue(n_models=12, colourways=3, query_views=6)
    world = sim.SimConfig(n_users=6, train_sessions=4, test_sessions=5, explore_pool=10)
    logs = sim.simulate(cat, emb, world)
    test = logs.test_sessions
    taste = diagnose.oracle_lists(logs.world, test, k=5)
    average = diagnose.oracle_lists(logs.world, test, k=5, taste=False)
    assert taste.shape == average.shape == (len(test), 5)
    for row, (intent, user) in enumerate(zip(test["intent"], test["user"], strict=True)):
        w = _order_weights(logs.world, intent, user)
        assert np.allclose(w[taste[row]], np.sort(w)[::-1][:5])  # the five heaviest, heaviest first
        # knowing the shopper never lowers the chance that the order is in the list
        assert w[taste[row]].sum() >= w[average[row]].sum() - 1e-12
    assert (taste != average).any()  # tastes differ, so some lists do


def test_oracles_agree_when_every_shopper_is_alike():
    cat, emb = fake_catalogue(n_models=12, colourways=3, query_views=6)
    alike = sim.SimConfig(n_users=6, train_sessions=4, test_sessions=5, explore_pool=10, taste=0.0,
                          price_sensitivity=0.0)
    logs = sim.simulate(cat, emb, alike)
    assert np.array_equal(diagnose.oracle_lists(logs.world, logs.test_sessions, 5),
                          diagnose.oracle_lists(logs.world, logs.test_sessions, 5, taste=False))
