"""Pruning policies: the null policy is exact, pruned searches stay valid, counts are honest, every
decision is per query (the same top-k alone or in a batch), and the sweep / test-once API."""

import math
import types

import numpy as np
import pandas as pd
import pytest
import torch
from test_gen import tiny_model, tiny_queries

from ovkit import config, gen, prune


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one torch thread; on a busy machine, many times faster than on more."""
    with config.one_torch_thread():
        yield


GRID = [{}, {"delta": 1.0}, {"delta": 2.0}, {"delta": 4.0}, {"tau": 0.3}, {"tau": 0.6}, {"keep_ratio": 0.5},
        {"keep_ratio": 0.75}, {"token_mass": 0.6}, {"token_mass": 0.9}, {"delta": 2.0, "token_mass": 0.9},
        {"delta": 1.0, "tau": 0.6}]


@pytest.fixture(scope="module")
def mixed():
    """24 queries of a 200-SKU model searched with 30 beams, half of them confident (the query is
    close to one SKU's vector, so its beams are peaked) and half not, so pruning cuts some queries'
    beams and not others'."""
    model = tiny_model(n=200, sizes=(16, 8, 4), n_visual=4, beam=30, prior_scale=8.0)
    q = tiny_queries(b=24, n_visual=4, n_items=200)
    rng = np.random.default_rng(5)
    sure = np.arange(0, 24, 2)
    vectors = model.item_vectors.numpy()[rng.choice(200, len(sure), replace=False)]
    q.global_[sure] = 4 * vectors + 0.5 * rng.normal(size=vectors.shape)
    return model, q


def pruned_rows(model, q, policy):
    """Per query: whether the policy's beam pruning cut any of its live beams (B,) bool."""
    hook, cut = prune.beam_width(policy), np.zeros(len(q), bool)

    def width(level, score):
        w = hook(level, score)
        cut[:] |= (w < torch.isfinite(score).sum(1)).numpy()
        return w

    gen.beam_search(model, q, 10, beam=30, width=width)
    return cut


def test_null_policy_reproduces_the_unpruned_search_exactly():
    model, q = tiny_model(beam=20), tiny_queries(b=12)
    expected = gen.beam_search(model, q, 10, beam=20)
    for policy in (prune.Policy(), prune.Policy(keep_ratio=1.0, token_mass=1.0, delta=math.inf, tau=1.0)):
        items, scores = prune.search(model, q, policy, 10, beam=20)
        assert np.array_equal(items, expected[0]) and np.array_equal(scores, expected[1])


def test_pruned_searches_return_only_real_skus_and_compute_less():
    model, q = tiny_model(beam=20), tiny_queries(b=12)
    full, pruned = {}, {}
    prune.search(model, q, prune.Policy(), 10, full, beam=20)
    policy = prune.Policy(keep_ratio=0.5, delta=1.0, tau=0.2, min_beams=10)
    items, scores = prune.search(model, q, policy, 10, pruned, beam=20)
    assert (items >= 0).all() and model.trie.contains(model.trie.codes[items]).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert pruned["decoder_rows"] < full["decoder_rows"] and pruned["encoder_tokens"] < full["encoder_tokens"]


@pytest.mark.parametrize("settings", GRID, ids=lambda s: prune.Policy(**s).name)
def test_a_query_gets_the_same_results_alone_or_in_a_batch(mixed, settings):
    model, q = mixed
    policy = prune.Policy(**settings)
    batch_stats = {}
    items, scores = prune.search(model, q, policy, 10, batch_stats, beam=30)
    single_stats = {}
    for i in range(len(q)):
        alone = prune.search(model, q.take(slice(i, i + 1)), policy, 10, single_stats, beam=30)
        assert np.array_equal(alone[0], items[i : i + 1]), f"query {i}"
        assert np.allclose(alone[1], scores[i : i + 1], atol=1e-4)
    assert batch_stats == single_stats  # the work counted is per query too
    assert (items >= 0).all()


def test_the_fixture_prunes_some_queries_and_not_others(mixed):
    """Guards the test above against passing vacuously."""
    model, q = mixed
    cut = {s["delta"] if "delta" in s else s["tau"]: pruned_rows(model, q, prune.Policy(**s))
           for s in GRID if set(s) in ({"delta"}, {"tau"})}
    assert all(c.any() for c in cut.values())  # every beam rule prunes some queries …
    assert sum(0 < c.sum() < len(q) for c in cut.values()) >= 3  # … and most leave some alone
    for mass in (0.6, 0.9):
        kept = prune.visual_keep(q, prune.Policy(token_mass=mass)).sum(1)
        assert len(np.unique(kept)) > 1  # queries keep different numbers of visual tokens


def test_small_delta_computes_fewer_decoder_rows_at_batch_1(mixed):
    model, q = mixed
    for i in range(4):
        full, pruned = {}, {}
        prune.search(model, q.take(slice(i, i + 1)), prune.Policy(), 10, full, beam=30)
        prune.search(model, q.take(slice(i, i + 1)), prune.Policy(delta=1.0), 10, pruned, beam=30)
        assert pruned["decoder_rows"] < full["decoder_rows"]


def test_token_counts_are_the_tokens_encoded():
    model, q = tiny_model(beam=20), tiny_queries(b=6)
    policy = prune.Policy(token_mass=0.6)
    keep = prune.visual_keep(q, policy)
    for i in range(len(q)):  # one query at a time, as the latency is measured
        stats = {}
        prune.search(model, q.take(slice(i, i + 1)), policy, 10, stats, beam=20)
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
        prune.search(tiny_model(), tiny_queries(), prune.Policy(min_beams=5), 10, beam=8)


def fake_logs(n, seed=0):
    """Logs with ``n`` validation and ``n`` test sessions (random target SKUs)."""
    rng = np.random.default_rng(seed)
    sessions = lambda: pd.DataFrame({col: rng.integers(0, 60, n) for col in ("ordered", "intent", "clicked")})
    splits = {"val": (sessions(), {}), "test": (sessions(), {})}
    return types.SimpleNamespace(val_sessions=splits["val"][0], test_sessions=splits["test"][0],
                                 sessions=splits.get)


def test_sweep_measures_every_policy_against_the_first():
    model, q = tiny_model(beam=20), tiny_queries(b=8)
    policies = [prune.Policy(), prune.Policy(delta=0.5), prune.Policy()]
    frame, times = prune.sweep(model, q, fake_logs(8), policies, timed=4, repeats=1, batch=4, beam=20)
    assert list(frame["policy"]) == ["unpruned", "δ 0.5", "unpruned"] and (frame["split"] == "val").all()
    assert list(times.columns) == ["unpruned", "δ 0.5", "unpruned #2"] and times.shape == (4, 3)
    first = frame.loc[0]
    assert first["speedup"] == first["speedup_ci_low"] == first["speedup_ci_high"] == 1.0
    assert (frame["speedup_ci_low"] <= frame["speedup"]).all()
    assert (frame["speedup"] <= frame["speedup_ci_high"]).all()
    assert np.allclose(frame["latency_ms"], times.median().to_numpy()) and (frame["batch4_ms"] > 0).all()
    assert frame.loc[1, "decoder_rows"] < frame.loc[0, "decoder_rows"] == frame.loc[2, "decoder_rows"]
    assert (frame["valid"] == 1.0).all() and frame.loc[2, "hr10_rel_loss"] == 0.0
    stats = {}
    prune.search(model, q, prune.Policy(delta=0.5), 10, stats, beam=20)
    assert frame.loc[1, "encoder_tokens"] == stats["encoder_tokens"] / len(q)


def test_measure_compares_the_chosen_policy_with_the_unpruned_search_once():
    model, q = tiny_model(beam=20), tiny_queries(b=8)
    logs = fake_logs(8)
    chosen = prune.Policy(delta=0.5)
    out, times = prune.measure(model, q, logs, chosen, timed=3, repeats=1, others={"other": lambda i: None},
                               beam=20)
    assert list(times.columns) == ["unpruned", "pruned", "other"] and len(times) == 3
    assert out["split"] == "test" and out["policy"] == "δ 0.5" and out["timed"] == 3
    items = {label: prune.search(model, q, policy, 10, beam=20)[0] for label, policy in
             (("unpruned", prune.Policy()), ("pruned", chosen))}
    for label in items:
        assert out[f"hr@10_{label}"] == gen.evaluate(items[label], logs, "test")["hr@10"]
        assert out[f"latency_ms_{label}"] > 0
    assert out["decoder_rows_pruned"] < out["decoder_rows_unpruned"]
    assert out["topk_changed"] == (items["unpruned"] != items["pruned"]).any(1).mean()
    assert out["speedup_ci_low"] <= out["speedup"] <= out["speedup_ci_high"]
    assert {"mrr@10_unpruned", "mrr@10_pruned", "hr10_rel_loss"} <= set(out)
    same, _ = prune.measure(model, q, logs, prune.Policy(), timed=2, repeats=1, beam=20)
    assert same["topk_changed"] == 0.0


def test_best_is_the_fastest_within_the_loss_budget_and_settings_round_trip():
    frame = pd.DataFrame({"speedup": [1.0, 1.5, 2.0, 1.2], "hr10_rel_loss": [0.0, 0.005, 0.03, -0.01]})
    assert prune.best(frame, 0.01).name == 1
    # speed-ups whose intervals overlap are a tie: less loss, then less decoder work wins, not the noise
    tied = pd.DataFrame({"speedup": [1.30, 1.32, 1.31, 1.20, 1.50],
                         "speedup_ci_low": [1.29, 1.30, 1.28, 1.19, 1.4],
                         "speedup_ci_high": [1.31, 1.34, 1.33, 1.21, 1.6],
                         "hr10_rel_loss": [0.0, 0.0, 0.0, 0.0, 0.02],
                         "decoder_rows": [40.0, 39.0, 39.0, 10.0, 5.0],
                         "encoder_tokens": [14, 14, 12, 14, 14]})
    assert prune.best(tied, 0.01).name == 2  # rows 39 (1, 2) beat 40 (0); 2 has fewer tokens; 3 is slower
    assert prune.best(tied.assign(hr10_rel_loss=[0.0, 0.0, 0.005, 0.0, 0.02]), 0.01).name == 1
    policy = prune.Policy(delta=2.0, token_mass=0.9)
    assert prune.settings(policy) == {"token_mass": 0.9, "delta": 2.0}
    assert prune.Policy(**prune.settings(policy)) == policy and prune.settings(prune.Policy()) == {}


def test_runner_answers_one_query_or_a_slice_as_search_does():
    model, q = tiny_model(beam=20), tiny_queries(b=6)
    policy = prune.Policy(delta=0.5)
    run = prune.runner(model, q, policy, beam=20)
    np.testing.assert_array_equal(run(2)[0], prune.search(model, q.take(slice(2, 3)), policy, beam=20)[0])
    np.testing.assert_array_equal(run(slice(1, 5))[0],
                                  prune.search(model, q.take(slice(1, 5)), policy, beam=20)[0])
