"""Pruning policies: the null policy is exact, pruned searches stay valid, counts are honest."""

import math
import types

import numpy as np
import pandas as pd
import pytest
from test_gen import tiny_model, tiny_queries

from ovkit import gen, prune


def test_null_policy_reproduces_the_unpruned_search_exactly():
    model, q = tiny_model(beam=20), tiny_queries(b=12)
    expected = gen.beam_search(model, q, 10)
    for policy in (prune.Policy(), prune.Policy(keep_ratio=1.0, token_mass=1.0, delta=math.inf, tau=1.0)):
        items, scores = prune.search(model, q, policy, 10)
        assert np.array_equal(items, expected[0]) and np.array_equal(scores, expected[1])


def test_pruned_searches_return_only_real_skus_and_compute_less():
    model, q = tiny_model(beam=20), tiny_queries(b=12)
    full, pruned = {}, {}
    prune.search(model, q, prune.Policy(), 10, full)
    policy = prune.Policy(keep_ratio=0.5, delta=1.0, tau=0.2, min_beams=10)
    items, scores = prune.search(model, q, policy, 10, pruned)
    assert (items >= 0).all() and model.trie.contains(model.trie.codes[items]).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert pruned["decoder_rows"] < full["decoder_rows"] and pruned["encoder_tokens"] < full["encoder_tokens"]


def test_token_counts_are_the_tokens_encoded():
    model, q = tiny_model(beam=20), tiny_queries(b=6)
    policy = prune.Policy(token_mass=0.6)
    keep = prune.visual_keep(q, policy)
    for i in range(len(q)):  # one query at a time, as the latency is measured
        stats = {}
        prune.search(model, q.take(slice(i, i + 1)), policy, 10, stats)
        history = int((q.history[i] >= 0).sum())
        assert stats["encoder_tokens"] == 1 + keep[i].sum() + history + 1  # global + visual + history + task


def test_dynamic_token_pruning_keeps_fewer_tokens_when_attention_is_concentrated():
    q = tiny_queries(b=2)
    q.visual[0] = 0.01 * q.visual[0]
    q.visual[0, 0] = 50 * q.global_[0]  # query 0 attends to one token only
    q.visual[1] = np.repeat(q.global_[1][None], q.visual.shape[1], 0)  # query 1: flat attention
    keep = prune.visual_keep(q, prune.Policy(token_mass=0.9))
    assert keep[0].sum() == 1 and keep[1].sum() == q.visual.shape[1]
    static = prune.visual_keep(q, prune.Policy(keep_ratio=0.5))
    assert (static.sum(1) == 1).all()  # ceil(0.5 * 2 tokens)


def test_bad_policies():
    with pytest.raises(ValueError, match="keep_ratio"):
        prune.Policy(keep_ratio=0.0)
    with pytest.raises(ValueError, match="tau"):
        prune.Policy(tau=1.5)
    with pytest.raises(ValueError, match="min_beams 5 < k=10"):
        prune.search(tiny_model(), tiny_queries(), prune.Policy(min_beams=5), 10)


def test_sweep_measures_every_policy_against_the_first():

    model, q = tiny_model(beam=20), tiny_queries(b=8)
    rng = np.random.default_rng(0)
    test = pd.DataFrame({"ordered": rng.integers(0, 60, 8), "intent": rng.integers(0, 60, 8),
                         "clicked": rng.integers(0, 60, 8)})
    logs = types.SimpleNamespace(test_sessions=test, test_histories={})
    policies = [prune.Policy(), prune.Policy(delta=0.5)]
    frame = prune.sweep(model, q, logs, policies, timed=4, repeats=1, batch=4)
    assert list(frame["policy"]) == ["unpruned", "δ 0.5"] and frame.loc[0, "speedup"] == 1.0
    assert frame.loc[1, "decoder_rows"] < frame.loc[0, "decoder_rows"] and (frame["valid"] == 1.0).all()


def test_best_is_the_fastest_within_the_loss_budget_and_settings_round_trip():
    frame = pd.DataFrame({"speedup": [1.0, 1.5, 2.0, 1.2], "hr10_rel_loss": [0.0, 0.005, 0.03, -0.01]})
    assert prune.best(frame, 0.01).name == 1
    policy = prune.Policy(delta=2.0, token_mass=0.9)
    assert prune.settings(policy) == {"token_mass": 0.9, "delta": 2.0}
    assert prune.Policy(**prune.settings(policy)) == policy and prune.settings(prune.Policy()) == {}
