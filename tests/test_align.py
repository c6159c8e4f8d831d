"""Alignment: retrieval metrics against brute force, loss behaviour, training determinism."""

import dataclasses
import types

import numpy as np
import pytest
import torch
from scipy import stats

from ovkit import align, data, store

SMALL = dict(n_models=3, colourways=2, query_views=4, cold_fraction=0.0, seed=1,
             render={"render_size": 64, "image_size": 32})


@pytest.fixture
def cat(kit_home, tiny_sh3f):
    return data.catalogue(source=tiny_sh3f, workers=1, **SMALL)


def _brute_force_recall(cat, emb, queries, k):
    catalog = cat.catalog_views()
    sims = emb[queries] @ emb[catalog["view_id"].to_numpy()].T
    items = catalog["item_id"].to_numpy()
    hits = []
    for q, row in zip(queries, sims, strict=True):
        best = {}
        for item, s in zip(items, row, strict=True):
            best[item] = max(best.get(item, -np.inf), s)
        ranked = sorted(best, key=lambda i: -best[i])[:k]
        hits.append(cat.views.loc[q, "item_id"] in ranked)
    return float(np.mean(hits))


def test_recall_matches_brute_force(cat):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(cat.views), 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    queries = cat.query_views()["view_id"].to_numpy()
    result = align.evaluate(cat, emb, queries, ks=(1, 3))
    for k in (1, 3):
        assert result[f"recall@{k}"] == pytest.approx(_brute_force_recall(cat, emb, queries, k))


def test_recall_hits_are_the_per_query_terms_of_recall(cat):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(len(cat.views), 16)).astype(np.float32)
    queries = cat.query_views()["view_id"].to_numpy()
    for k in (1, 3):
        hits = align.recall_hits(cat, emb, queries, k)
        assert hits.shape == (len(queries),) and set(np.unique(hits)) <= {0.0, 1.0}
        assert hits.mean() == pytest.approx(_brute_force_recall(cat, emb, queries, k))


def test_perfect_embeddings_give_perfect_recall_and_positive_gap(cat):
    emb = np.eye(len(cat.items), dtype=np.float32)[cat.views["item_id"].to_numpy()]
    result = align.evaluate(cat, emb, cat.query_views()["view_id"].to_numpy())
    assert result["recall@1"] == 1.0 and result["model_recall@1"] == 1.0
    assert result["view_gap"] == pytest.approx(1.0)


def test_empty_split_is_an_error(cat):
    with pytest.raises(ValueError, match="split is empty"):
        align.evaluate(cat, np.zeros((len(cat.views), 4), np.float32), [])


@pytest.mark.slow
@pytest.mark.parametrize("l1,l2", [(1.0, 0.0), (0.0, 1.0), (1.0, 0.5)])
def test_loss_pulls_positive_pairs_together(l1, l2):
    torch.manual_seed(0)
    x = torch.randn(8, 16, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss_fn = align.AlignLoss(align.AlignConfig(lambda_contrastive=l1, lambda_circle=l2))
    opt = torch.optim.SGD([x], lr=0.5)

    def positive_cosine():
        e = torch.nn.functional.normalize(x.detach(), dim=1)
        return float((e[:4] * e[4:]).sum(1).mean())

    before = positive_cosine()
    for _ in range(20):
        loss, _ = loss_fn(torch.nn.functional.normalize(x, dim=1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert positive_cosine() > before + 0.2


@pytest.mark.parametrize("labels", [torch.arange(48).repeat(2),  # one positive each: the paired path
                                    torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 4, 4])])  # NTXentLoss itself
def test_contrastive_term_is_pytorch_metric_learnings_nt_xent(labels):
    from pytorch_metric_learning import losses

    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(len(labels), 32), dim=1)
    ours, oracle = x.clone().requires_grad_(), x.clone().requires_grad_()
    loss = align.AlignLoss(align.AlignConfig(temperature=0.07)).nt_xent(ours, labels)
    expected = losses.NTXentLoss(temperature=0.07)(oracle, labels)
    loss.backward()
    expected.backward()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert torch.allclose(ours.grad, oracle.grad, atol=1e-7)


def test_sampler_pairs_share_labels_and_bring_siblings(cat):
    sampler = align.PairSampler(cat, align.AlignConfig(batch_models=2))
    ids, labels = sampler.batch()
    n = len(ids) // 2
    assert (cat.views["item_id"].to_numpy()[ids] == labels).all()
    assert (labels[:n] == labels[n:]).all()
    models = cat.items["model_id"].to_numpy()[labels[:n]]
    assert all((models == m).sum() == 2 for m in set(models))  # both colourways of each model


def test_short_training_is_deterministic(cat):
    maps = np.random.default_rng(0).normal(size=(len(cat.views), 8, 2, 2)).astype(np.float16)
    cfg = align.AlignConfig(dim=16, n_tokens=2, heads=2, hidden=32, steps=6, eval_every=3, batch_models=2)
    runs = [align.train_head(cat, maps, cfg, progress=False) for _ in range(2)]
    for a, b in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert runs[0][1]["loss"].tolist() == runs[1][1]["loss"].tolist()
    emb, tok = align.embed(runs[0][0], maps)
    assert emb.shape == (len(cat.views), 16) and tok.shape == (len(cat.views), 2, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_tuned_blocks_train_with_the_head(cat):
    from ovkit import backbone

    maps, artifact = backbone.cached_maps(cat, tune_blocks=1)
    assert maps.shape[1] == 192  # input of lite0's last block stage, not the 1280-channel output
    cfg = align.AlignConfig(dim=16, n_tokens=2, heads=2, steps=3, eval_every=3, batch_models=2, tune_blocks=1)
    run = align.aligned(cat, maps, artifact, cfg)
    start = backbone.split(backbone.create(), 1).tuned.state_dict()
    trained = {k[len("tuned."):]: v for k, v in run.head.state_dict().items() if k.startswith("tuned.")}
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in start if start[k].is_floating_point())
    with pytest.raises(ValueError, match="cached for tune_blocks=1"):
        align.aligned(cat, maps, artifact, dataclasses.replace(cfg, tune_blocks=0))
    with pytest.raises(TypeError, match=r"pass ALIGN as a AlignConfig \(e.g. AlignConfig.from_overrides"):
        align.aligned(cat, maps, artifact, {"steps": 3})  # settings are parsed once, where they enter


def test_frozen_maps_derived_from_the_tuned_blocks_cut(cat):
    """via=1: the whole trunk's maps from the cached cut (one trunk pass for both); the oracle is the
    direct pass, equal up to the float16 rounding at the cut; the two are cached apart."""
    from ovkit import backbone

    direct, direct_artifact = backbone.cached_maps(cat)
    derived, derived_artifact = backbone.cached_maps(cat, via=1)
    assert derived.shape == direct.shape and derived.dtype == np.float16
    np.testing.assert_allclose(derived.astype(np.float32), direct.astype(np.float32), atol=0.05, rtol=0.01)
    assert derived_artifact.key != direct_artifact.key
    cut = backbone.cached_maps(cat, tune_blocks=1)[1]
    assert derived_artifact.meta["upstream"] == {"features": cut.key}  # built from the cut, not the photos
    with pytest.raises(backbone.BackboneError, match="needs tune_blocks=0"):
        backbone.cached_maps(cat, tune_blocks=1, via=1)
    # what notebook 01 and pipeline.load read: the cut and the maps derived from it, or one pass twice
    (_, at_cut), (_, frozen) = backbone.trunk_maps(cat, tune_blocks=1)
    assert (at_cut.key, frozen.key) == (cut.key, derived_artifact.key)
    (_, at_cut), (_, frozen) = backbone.trunk_maps(cat)
    assert at_cut.key == frozen.key == direct_artifact.key


def test_retention_table_shows_each_interval():
    kept = {"all": {"aligned": (0.125, 0.1, 0.15), "aligned − frozen": (-0.014, -0.056, 0.027)},
            "camera": {"aligned": (0.5, 0.46, 0.58), "aligned − frozen": (0.1, -0.004, 0.2)}}
    table = align.retention_table(kept)
    assert table.index.tolist() == ["all", "camera"]
    assert table.loc["all", "aligned"] == "0.12 [0.10, 0.15]"  # 0.125 rounds half to even
    assert table.loc["camera", "aligned − frozen"] == "0.10 [-0.00, 0.20]"


def test_stage_version_bump_rebuilds_the_head(cat, monkeypatch):
    """A change to align's build code must come with a STAGE_VERSION bump, which rebuilds the head."""
    from ovkit import backbone

    maps, artifact = backbone.cached_maps(cat)
    cfg = align.AlignConfig(dim=16, n_tokens=2, heads=2, steps=3, eval_every=3, batch_models=2)
    first = align.aligned(cat, maps, artifact, cfg)
    assert not align.aligned(cat, maps, artifact, cfg).artifact.fresh  # same code: the cache
    monkeypatch.setattr(align, "STAGE_VERSION", align.STAGE_VERSION + 1)
    bumped = align.aligned(cat, maps, artifact, cfg)
    assert bumped.artifact.fresh and bumped.artifact.key != first.artifact.key
    assert bumped.artifact.meta["version"] == align.STAGE_VERSION


_train_head = align.train_head  # the real one, while a test counts its calls


def test_checkpoint_rules_share_one_training(cat, monkeypatch):
    """Heads that differ only in their checkpoint rule train once (stage align_train), and each
    rule keeps the checkpoint a training run scored by that rule keeps (the oracle)."""
    from ovkit import backbone

    maps, artifact = backbone.cached_maps(cat)
    base = align.AlignConfig(dim=16, n_tokens=2, heads=2, steps=8, eval_every=2, batch_models=2, lr=0.05)
    trainings = []
    monkeypatch.setattr(align, "train_head", lambda *a, **k: trainings.append(a[2]) or _train_head(*a, **k))
    runs = {rule: align.aligned(cat, maps, artifact, dataclasses.replace(base, select_on=rule))
            for rule in ("val", "both", "heldout")}
    assert [cfg.select_on for cfg in trainings] == ["val"]  # one training for three rules
    assert len({run.artifact.key for run in runs.values()}) == 3
    assert {"val_recall@1", "heldout_val_recall@1"} <= set(runs["both"].history)
    for rule, run in runs.items():
        oracle, history, checkpoints = _train_head(cat, maps, dataclasses.replace(base, select_on=rule),
                                                   progress=False)
        assert sorted(checkpoints) == [2, 4, 6, 8]
        for name, value in oracle.state_dict().items():
            torch.testing.assert_close(run.head.state_dict()[name], value, rtol=0, atol=0)
        chosen = align.best_step(history, align.selection_views(cat, rule))
        assert run.artifact.meta["chosen_step"] == chosen


def test_choice_on_validation_needs_more_than_a_tie(built):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(built.views), 8)).astype(np.float32)
    perfect = np.eye(len(built.items), dtype=np.float32)[built.views["item_id"].to_numpy()]
    candidates = {"plain": noise, "better": perfect}
    chosen, table = align.choose_on_validation(built, candidates, baseline="plain", tie=0.005)
    assert chosen == "better" and table.loc["better", "score"] == 1.0
    assert list(table.columns) == ["val R@1", "heldout_val R@1", "score"]
    assert align.choose_on_validation(built, candidates, baseline="plain", tie=2.0)[0] == "plain"
    held = align.heldout_recall(built, candidates)
    assert list(held.index) == ["all", *data.render.FACTORS]
    lighting = built.heldout_views("test", "lighting", cold=False)["view_id"]
    assert held.loc["lighting", "better"] == align.evaluate(built, perfect, lighting)["recall@1"] == 1.0


def test_every_align_setting_is_in_the_cache_key(monkeypatch):
    """The stage is keyed on its whole settings dataclass: a new field cannot be left out silently;
    one added later (KEYED_WHEN_SET) is keyed when set, so heads cached before it stay valid."""
    seen = {}

    def cached(stage, params, build, **kwargs):
        seen.clear()
        seen.update(params)
        raise LookupError("stop before building")

    monkeypatch.setattr(store, "cached", cached)
    maps_artifact = store.Artifact("features", "k", None, {"params": {"tune_blocks": 0}})
    with pytest.raises(LookupError):
        align.aligned(None, None, maps_artifact)
    assert {f.name for f in dataclasses.fields(align.AlignConfig)} - set(align.KEYED_WHEN_SET) == set(seen)
    assert align.stage_params(align.AlignConfig(tune_blocks=1, wise_alphas=(0.5,)))["wise_alphas"] == (0.5,)


def test_wise_ft_mixes_the_tuned_blocks_toward_the_pretrained_ones():
    """WiSE-FT's weights against the formula (1 - α)·pretrained + α·tuned, by hand on small tensors."""
    pretrained = {"w": torch.tensor([0.0, 2.0]), "bn.num_batches_tracked": torch.tensor(0)}
    tuned = {"tuned.w": torch.tensor([4.0, 4.0]), "tuned.bn.num_batches_tracked": torch.tensor(7),
             "out.weight": torch.tensor([1.0])}
    mixed = align.wise_state(tuned, pretrained, 0.25)
    assert mixed["tuned.w"].tolist() == [1.0, 2.5]  # 0.75·0 + 0.25·4, 0.75·2 + 0.25·4
    assert mixed["tuned.bn.num_batches_tracked"].item() == 7 and mixed["out.weight"].tolist() == [1.0]
    assert align.wise_state(tuned, pretrained, 1.0)["tuned.w"].tolist() == [4.0, 4.0]
    assert align.wise_state(tuned, pretrained, 0.0)["tuned.w"].tolist() == [0.0, 2.0]
    assert tuned["tuned.w"].tolist() == [4.0, 4.0]  # the trained state is left as it was
    with pytest.raises(ValueError, match="set tune_blocks too"):
        align.AlignConfig.from_overrides({"wise_alphas": [0.5]})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        align.AlignConfig.from_overrides({"tune_blocks": 1, "wise_alphas": [1.5]})


def test_wise_ft_alpha_is_chosen_on_validation_photos(cat):
    """Stage align with wise_alphas: each α is scored on the validation sets of the notebook 01 rule,
    the best is kept, and the served head is the one mixed with it (training is shared)."""
    from ovkit import backbone

    maps, artifact = backbone.cached_maps(cat, tune_blocks=1)
    cfg = align.AlignConfig(dim=16, n_tokens=2, heads=2, steps=3, eval_every=3, batch_models=2, tune_blocks=1)
    plain = align.aligned(cat, maps, artifact, cfg)
    mixed = align.aligned(cat, maps, artifact, dataclasses.replace(cfg, wise_alphas=(1.0, 0.0, 0.5)))
    assert mixed.artifact.meta["upstream"] == plain.artifact.meta["upstream"]  # one training
    table = mixed.wise
    assert table["alpha"].tolist() == [1.0, 0.0, 0.5] and table["chosen"].sum() == 1
    views = align.selection_views(cat, "both")
    assert set(views) == {"val", "heldout_val"}
    scores = table[[f"{name}_recall@1" for name in views]].mean(axis=1)
    assert table["score"].tolist() == pytest.approx(scores.tolist())
    best = table.loc[table["chosen"], "alpha"].item()
    assert best == table["alpha"][int(np.argmax(table["score"]))] == mixed.artifact.meta["wise_alpha"]
    start = backbone.split(backbone.create(), 1).tuned.state_dict()
    expected = align.wise_state(plain.head.state_dict(), start, best)
    for key, value in mixed.head.state_dict().items():
        assert torch.allclose(value.float(), expected[key].float()), key
    assert plain.wise is None and align.aligned(cat, maps, artifact, cfg).artifact.key == plain.artifact.key


def test_photos_of_the_wrong_size_are_refused():
    cat = types.SimpleNamespace(pixels=np.zeros((1, 128, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="128×128"):
        align.photo_features(cat, {}, np.zeros((2, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        align.photo_features(cat, {}, np.zeros((2, 128, 128, 3), np.float32))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_bit_dropout_drops_each_entry_with_probability_p(p):
    layer = align.BitDropout(p).train()
    torch.manual_seed(0)
    x = torch.ones(400, 16, 160, requires_grad=True)
    y = layer(x)
    dropped = int((y == 0).sum())
    assert stats.binomtest(dropped, y.numel(), p).pvalue > 1e-3  # the drop share is p (a binomial test)
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))  # inverted: survivors scaled, E[y] = x
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes through the same mask
    torch.manual_seed(0)
    assert torch.equal(layer(x), y)  # seeded by torch's generator
    assert torch.equal(layer.eval()(x), x)


def test_bit_dropout_masks_are_independent_between_neighbouring_entries():
    torch.manual_seed(1)
    kept = (align.BitDropout(0.5).train()(torch.ones(1 << 20)) > 0).numpy()
    # the four 16-bit slices of one random word must not agree more than chance
    agree = (kept[0::4] == kept[1::4]).mean()
    assert abs(agree - 0.5) < 0.005
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        align.BitDropout(1.0)


def test_heldout_retention_per_condition_is_held_out_over_in_distribution_recall(built):
    """Perfect everywhere but on the photos with lighting changed alone: retention 1 for every other
    condition, and for lighting the Recall@1 of those photos over the in-distribution one."""
    perfect = np.eye(len(built.items), dtype=np.float32)[built.views["item_id"].to_numpy()]
    lighting = built.heldout_views("test", "lighting", cold=False)["view_id"].to_numpy()
    hurt = perfect.copy()
    hurt[lighting] = np.random.default_rng(0).normal(size=(len(lighting), perfect.shape[1]))
    test = built.query_views("test", cold=False)["view_id"].to_numpy()
    kept = align.heldout_retention(built, {"hurt": hurt, "perfect": perfect}, test)
    assert list(kept) == ["all", *data.render.FACTORS]
    recall = {name: align.evaluate(built, hurt, views)["recall@1"] for name, views in
              (("lighting", lighting), ("test", test))}
    expected = recall["lighting"] / recall["test"]
    assert kept["lighting"]["hurt"][0] == pytest.approx(expected) and expected < 1
    assert kept["lighting"]["hurt − perfect"][0] == pytest.approx(expected - 1)
    low, high = kept["lighting"]["hurt"][1:]
    assert low <= expected <= high
    for condition in ("all", "background", "camera"):
        assert kept[condition]["hurt"] == pytest.approx((1.0, 1.0, 1.0))


def test_options_from_a_sweep_are_chosen_on_validation_by_notebook_01s_rule():
    """One row per sweep cell, metrics averaged over its finished points, chosen on the validation
    score alone against the first cell (a challenger must gain at least the tie)."""
    def run(score, test):
        return {"01.validation_score.aligned": score, "01.val_recall@1.aligned": score + 0.05,
                "01.recall@1.aligned": test, "01.heldout_ratio.background.aligned": 0.5,
                "01.heldout_ratio.background.aligned_ci_low": 0.4,
                "01.heldout_ratio.background.aligned_ci_high": 0.6}

    points = {"a": {"status": "ok", "metrics": run(0.130, 0.17)},
              "b": {"status": "ok", "metrics": run(0.134, 0.30)},  # best test: never a reason to choose
              "c": {"status": "ok", "metrics": run(0.140, 0.10)},
              "d": {"status": "failed", "metrics": run(0.9, 0.9)}}
    summary = {"points": points, "cells": {
        "ALIGN=": {"overrides": {"ALIGN": {}}, "points": ["a"]},
        "ALIGN.augment=r": {"overrides": {"ALIGN": {"augment": ["randomised"]}}, "points": ["b"]},
        "BACKBONE=x": {"overrides": {"BACKBONE": "x"}, "points": ["c", "d"]}}}
    table = align.options_from_sweep(summary)
    assert table["setting"].tolist() == ["profile as is", "augment=['randomised']", "BACKBONE=x"]
    assert table["seeds"].tolist() == [1, 1, 1]  # the failed point is left out
    assert table["chosen"].tolist() == [False, False, True]  # +0.010 over the baseline; +0.004 is a tie
    assert table.loc[0, "retention background_ci_low"] == 0.4 and np.isnan(table.loc[0, "retention camera"])
    del summary["cells"]["BACKBONE=x"]
    assert align.options_from_sweep(summary)["chosen"].tolist() == [True, False]  # a tie: the first
