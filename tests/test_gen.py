"""The generative model: trie, constrained beam search (vs exhaustive scoring), DPO (vs the formula),
stage caching and bad input."""

import copy
import dataclasses
import math
import types

import numpy as np
import pandas
import pytest
import torch
from conftest import fake_catalogue

from ovkit import config, gen, mca, metrics, sim, store, vrq


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one torch thread; on a busy machine, many times faster than on more."""
    with config.one_torch_thread():
        yield


TINY = {"d_model": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "history": 4, "dropout": 0.0,
        "batch": 32, "beam": 8}


def random_codes(n=60, sizes=(4, 3, 5), seed=0):
    rng = np.random.default_rng(seed)
    space = np.array(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")).reshape(len(sizes), -1).T
    return space[rng.choice(len(space), n, replace=False)], sizes


def tiny_vectors(n=60, dim=16, seed=0):
    """The item vectors :func:`tiny_model` is built with."""
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def tiny_model(n=60, sizes=(4, 3, 5), dim=16, n_visual=2, seed=0, attributes=None, **overrides):
    codes, sizes = random_codes(n, sizes, seed)
    torch.manual_seed(seed)
    model = gen.OneVision(gen.GenConfig.from_overrides({**TINY, **overrides}), gen.Trie(codes, sizes),
                          tiny_vectors(n, dim, seed), n_visual, attributes)
    return model.eval()


def tiny_queries(b=5, dim=16, n_visual=2, history=4, n_items=60, seed=1):
    rng = np.random.default_rng(seed)
    hist = rng.integers(-1, n_items, size=(b, history))
    hist[0] = -1  # one query without any history
    return gen.Queries(rng.normal(size=(b, dim)).astype(np.float32),
                       rng.normal(size=(b, n_visual, dim)).astype(np.float32), hist, np.ones(b, np.int64))


def test_trie_paths_lead_to_their_items_and_reject_unknown_sids():
    codes, sizes = random_codes(n=40)
    trie = gen.Trie(codes, sizes)
    assert np.array_equal(trie.leaf_item[trie.path[:, -1]], np.arange(len(codes)))
    assert trie.contains(codes).all()
    space = np.array(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")).reshape(3, -1).T
    unused = np.array([c for c in space if not (codes == c).all(1).any()])
    assert not trie.contains(unused).any()
    tokens = trie.tokens(np.arange(len(codes)))
    assert tokens.min() >= 1 and tokens.max() < trie.n_tokens  # 0 is BOS
    with pytest.raises(ValueError, match="share a semantic ID"):
        gen.Trie(np.vstack([codes, codes[:1]]), sizes)
    with pytest.raises(ValueError, match="outside its level"):
        gen.Trie(codes + 10, sizes)


def test_branching_counts_prefixes_and_children_per_level():
    trie = gen.Trie(np.array([[0, 0], [0, 1], [1, 0], [2, 1], [2, 0], [2, 2]]), (3, 3))
    table = trie.branching()
    # by hand: level 1 = the root with 3 children; level 2 = prefixes 0, 1, 2 with 2, 1, 3 children
    assert table["prefixes"].tolist() == [1, 3] and table["mean children"].tolist() == [3.0, 2.0]
    assert list(table.index) == ["level 1", "level 2"]


def test_colourway_facts_count_by_hand():
    cat, emb = fake_catalogue(n_models=12, colourways=2, query_views=4)
    logs = sim.simulate(cat, emb, sim.SimConfig(n_users=10, train_sessions=6, test_sessions=2),
                        retrieve=mca.Cascade(cat, emb, mca.MCAConfig(recall=20, prerank=10)).retrieve)
    n = len(cat.items)
    codes = np.stack([np.arange(n) // 2, np.arange(n) % 2], 1)  # SID = (model, colourway)
    chosen, rejected = np.array([0, 2]), np.array([[1, 5], [4, -1]])  # SKU 1 is 0's colourway; 5 and 4 not
    facts = gen.colourway_facts(cat, logs, codes, chosen, rejected)
    model_of = cat.items["model_id"].to_numpy()
    assert (model_of[0], model_of[1]) == (0, 0) and model_of[4] != model_of[2]  # the fake's layout
    assert facts["DPO rejected SKUs that are another colourway of the chosen"] == pytest.approx(1 / 3)
    assert facts["colourway pairs sharing SID level 1"] == 1.0  # level 1 is the model here
    assert facts["colourway pairs sharing SID levels 1-2"] == 0.0
    test = logs.test_sessions
    exact = (test["ordered"] == test["intent"]).mean()
    assert facts["test orders of the SKU in the photo"] == pytest.approx(exact)


def test_incremental_decoding_equals_decoding_the_whole_prefix():
    """decode_step with its key/value cache (what beam search runs) against decode (what training runs)."""
    model = tiny_model(decoder_layers=2, heads=4)
    q = tiny_queries()  # query 0 has no history: its memory is padded
    mem = model.encode(q)
    b, n = len(q), 3
    tokens = torch.as_tensor(model.trie.tokens(np.random.default_rng(2).integers(0, 60, b * n)))
    tokens = tokens.view(b, n, -1)  # n beams per query, each an SKU's whole SID
    cache = model.start_decoding(mem)
    step_input = torch.full((b, 1), gen.BOS)
    for level in range(model.trie.depth):
        hidden = model.decode_step(cache, step_input)  # (b, beams so far)
        whole = model.decode(mem.memory.repeat_interleave(n, 0), mem.mask.repeat_interleave(n, 0),
                             tokens.reshape(b * n, -1)[:, :level])[:, -1].view(b, n, -1)
        assert torch.allclose(hidden.expand(b, n, -1) if level == 0 else hidden, whole, atol=1e-5)
        if level == 0:  # the root's one beam branches into n
            cache.reorder(torch.zeros(b, n, dtype=torch.long))
        step_input = tokens[:, :, level]
    cache.reorder(torch.tensor([[2, 0, 0]] * b))  # beams die and branch: rows follow their parents
    assert torch.equal(cache.selves[0][0][:, 1], cache.selves[0][0][:, 2])


@pytest.mark.parametrize("prior", [0.0, 20.0])
def test_full_width_beam_search_equals_exhaustive_scoring(prior):
    model = tiny_model(prior_scale=prior)
    q = tiny_queries()
    every = gen.score_all(model, q)  # teacher forcing over all 60 SKUs
    assert np.allclose(np.logaddexp.reduce(every, axis=1), 0.0, atol=1e-4)  # a distribution over SKUs
    items, scores = gen.beam_search(model, q, k=10, beam=60)
    expected = np.argsort(-every, axis=1, kind="stable")[:, :10]
    assert np.array_equal(np.sort(items, 1), np.sort(expected, 1))
    assert np.allclose(scores, np.take_along_axis(every, items, 1), atol=1e-4)
    assert np.allclose(scores, -np.sort(-every, 1)[:, :10], atol=1e-4)


def test_narrow_beams_return_only_real_skus():
    model = tiny_model()
    q = tiny_queries(b=20)
    items, scores = gen.beam_search(model, q, k=8, beam=8)
    assert (items >= 0).all() and np.isfinite(scores).all()
    assert model.trie.contains(model.trie.codes[items]).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    free, _ = gen.beam_search(model, q, k=8, beam=8, constrained=False)  # without the trie: may miss
    assert set(np.unique(free)) <= set(range(60)) | {-1}


def row_widths(widths):
    """A ``width`` hook giving row i of the batch ``widths[i]`` beams."""
    return lambda level, score: torch.as_tensor(widths[: len(score)])


def test_per_row_widths_prune_each_query_on_its_own():
    model, q = tiny_model(), tiny_queries(b=6)
    full_stats = {}
    full = gen.beam_search(model, q, 8, beam=12, stats=full_stats)
    same = gen.beam_search(model, q, 8, beam=12, width=lambda *_: 12)  # full width: the unpruned search
    assert all(np.array_equal(a, b) for a, b in zip(full, same, strict=True))
    widths = [8, 12, 9, 12, 8, 10]
    batch_stats = {}
    items, scores = gen.beam_search(model, q, 8, beam=12, width=row_widths(widths), stats=batch_stats)
    single_rows = 0
    for i, w in enumerate(widths):  # alone, with the same width: the same results and the same work
        stats = {}
        one = q.take(slice(i, i + 1))
        alone = gen.beam_search(model, one, 8, beam=12, width=row_widths([w]), stats=stats)
        assert np.array_equal(alone[0], items[i : i + 1])
        assert np.allclose(alone[1], scores[i : i + 1], atol=1e-5)
        single_rows += stats["decoder_rows"]
    assert batch_stats["decoder_rows"] == single_rows
    assert (items >= 0).all() and np.isfinite(scores).all()  # width >= k: dead beams never show up
    assert batch_stats["decoder_rows"] < full_stats["decoder_rows"]  # the narrow rows did lose beams


def test_a_history_with_gaps_is_packed_so_its_query_does_not_depend_on_the_batch():
    model = tiny_model()
    with torch.no_grad():
        model.history_pos.mul_(50)  # positions that matter, so a shifted click shows in the results
    q = tiny_queries(b=4)
    q.history[:] = [[-1, -1, -1, -1], [3, 9, 14, 27], [-1, 5, -1, 7], [11, -1, -1, 2]]
    gapped = q.take(slice(2, 3))
    packed = gen.Queries(gapped.global_, gapped.visual, np.array([[-1, -1, 5, 7]]), gapped.task)
    np.testing.assert_array_equal(gen.model.pack_history(torch.as_tensor(q.history)).numpy(),
                                  [[-1, -1, -1, -1], [3, 9, 14, 27], [-1, -1, 5, 7], [-1, -1, 11, 2]])
    items, scores = gen.beam_search(model, q, 8, beam=8)
    for one in (gapped, packed):
        alone = gen.beam_search(model, one, 8, beam=8)
        np.testing.assert_array_equal(alone[0], items[2:3])
        np.testing.assert_allclose(alone[1], scores[2:3], atol=1e-5)


def test_dead_beams_come_back_only_as_empty_slots():
    model, q = tiny_model(), tiny_queries(b=4)
    items, scores = gen.beam_search(model, q, 8, beam=8, width=lambda level, score: 1)  # one beam: ≤ 5 SKUs
    live = np.isfinite(scores)
    assert (live.sum(1) <= 5).all() and ((items >= 0) == live).all()
    assert (live[:, :-1] >= live[:, 1:]).all()  # live results first
    assert model.trie.contains(model.trie.codes[items[live]]).all()


def test_beam_narrower_than_k_is_refused():
    with pytest.raises(ValueError, match="smaller than k"):
        gen.beam_search(tiny_model(), tiny_queries(), k=10, beam=5)


def test_the_beam_width_is_always_the_callers_never_the_saved_configs():
    """A cached model carries the config it was trained with; serving reads only what it is given."""
    model, q = tiny_model(n=200, sizes=(16, 8, 4)), tiny_queries(b=8, n_items=200)
    with pytest.raises(TypeError, match="beam"):
        gen.beam_search(model, q, 8)  # no width from the saved config: the caller must say
    wide = gen.beam_search(model, q, 8, beam=64)
    model.cfg = dataclasses.replace(model.cfg, beam=8)  # a saved config with another width …
    again = gen.beam_search(model, q, 8, beam=64)
    assert all(np.array_equal(a, b) for a, b in zip(again, wide, strict=True))  # … changes nothing
    assert not np.array_equal(gen.beam_search(model, q, 8, beam=8)[1], wide[1])  # the width given does


def test_dpo_loss_is_the_formula():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([[-1.5, -3.0], [-2.5, float("-inf")]])
    rc, rr = torch.tensor([-1.2, -1.8]), torch.tensor([[-1.0, -2.0], [-2.0, 0.0]])
    beta = 0.5
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    pairs = [(0, 0), (0, 1), (1, 0)]  # (1, 1) is padding
    by_hand = [-math.log(sig(beta * ((pc[i] - rc[i]) - (pr[i, j] - rr[i, j])).item())) for i, j in pairs]
    assert gen.dpo_loss(pc, pr, rc, rr, beta).item() == pytest.approx(np.mean(by_hand), rel=1e-5)
    listwise = []
    for i, valid in ((0, [0, 1]), (1, [0])):
        w = beta * (pc[i] - rc[i]).item()
        ls = [beta * (pr[i, j] - rr[i, j]).item() for j in valid]
        listwise.append(-(w - math.log(math.exp(w) + sum(math.exp(x) for x in ls))))
    listwise_loss = gen.dpo_loss(pc, pr, rc, rr, beta, listwise=True).item()
    assert listwise_loss == pytest.approx(np.mean(listwise), rel=1e-5)
    # one rejected per chosen: both forms agree
    one, one_list = (gen.dpo_loss(pc, pr[:, :1], rc, rr[:, :1], beta, mode) for mode in (False, True))
    assert one.item() == pytest.approx(one_list.item(), rel=1e-5)


@pytest.mark.parametrize("mode", ["pairwise", "listwise"])
def test_dpo_moves_the_policy_and_never_the_reference(mode):
    model = tiny_model(dpo=mode, dpo_steps=5, dpo_lr=1e-2)
    reference = copy.deepcopy(model)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    q = tiny_queries(b=12)
    chosen = np.arange(12)
    rejected = np.stack([np.arange(12, 24), np.r_[np.arange(24, 35), -1]], 1)
    history = gen.train_dpo(model, reference, q, chosen, rejected, 5, progress=False)
    assert len(history) == 5 and np.isfinite(history["loss"]).all()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in before.items())
    assert not all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.fixture(scope="module")
def world():
    cat, emb = fake_catalogue(n_models=20, colourways=3, query_views=9)
    cfg = sim.SimConfig(n_users=20, train_sessions=10, test_sessions=2, explore_pool=20)
    cascade = mca.Cascade(cat, emb, mca.MCAConfig(recall=30, prerank=20))
    logs = sim.simulate(cat, emb, cfg, retrieve=cascade.retrieve)
    rng = np.random.default_rng(0)
    tokens = emb[:, None, :] + 0.1 * rng.normal(size=(len(emb), 2, emb.shape[1])).astype(np.float32)
    artifact = store.Artifact("align", "fakealign", None, {})
    run = types.SimpleNamespace(embeddings=emb, tokens=tokens, artifact=artifact)  # like align.Aligned
    return cat, emb, logs, run


STEPS = {**TINY, "pretrain_steps": 6, "sft_steps": 4, "dpo_steps": 3, "eval_every": 3}
SIDS = vrq.VRQConfig(levels=(4, 4), opq_codes=2, opq_size=8)


def staged(**change) -> gen.GenConfig:
    """The staged-training settings of these tests, with some fields changed."""
    return gen.GenConfig.from_overrides({**STEPS, **change})


def test_stages_train_cache_and_refuse_other_sids(kit_home, world):
    cat, emb, logs, run = world
    ids = vrq.semantic_ids(cat, emb, cat.artifact, SIDS)
    stages = gen.train_stages(cat, run, ids, logs, staged(), progress=False)
    assert list(stages) == ["pretrain", "sft", "dpo"] and all(s.artifact.fresh for s in stages.values())
    assert "val_hr@10" in stages["sft"].history.dropna().columns
    q = gen.session_queries(logs, emb, run.tokens, 4)
    items, _ = gen.beam_search(stages["dpo"].model, q, 5, beam=8)
    assert (items >= 0).all()
    again = gen.train_stages(cat, run, ids, logs, staged(), progress=False)  # read back, not retrained
    assert not any(s.artifact.fresh for s in again.values())
    assert np.array_equal(gen.beam_search(again["dpo"].model, q, 5, beam=8)[0], items)
    changed = gen.train_stages(cat, run, ids, logs, staged(dpo_steps=2), progress=False)
    assert not changed["sft"].artifact.fresh and changed["dpo"].artifact.fresh  # only DPO reruns
    other = vrq.semantic_ids(cat, emb, cat.artifact, dataclasses.replace(SIDS, levels=(8, 4)))
    with pytest.raises(ValueError, match="other semantic IDs"):
        gen.load_model(stages["sft"].artifact / "model.pt", other)


def test_pretraining_is_keyed_on_the_validation_sessions_alone(kit_home, world):
    """Another logging policy (other training logs, same validation sessions) reuses the pretrained
    model and retrains SFT and DPO; other validation sessions retrain everything."""
    cat, emb, logs, run = world
    ids = vrq.semantic_ids(cat, emb, cat.artifact, SIDS)
    first = gen.train_stages(cat, run, ids, logs, staged(), progress=False)
    relogged = dataclasses.replace(logs, train_log=logs.train_log.iloc[::-1].reset_index(drop=True))
    again = gen.train_stages(cat, run, ids, relogged, staged(), progress=False)
    assert again["pretrain"].artifact.key == first["pretrain"].artifact.key
    assert [again[s].artifact.fresh for s in gen.STAGES] == [False, True, True]
    val = logs.val_sessions.copy()
    val["ordered"] = val["ordered"].to_numpy()[::-1]
    revalidated = gen.train_stages(cat, run, ids, dataclasses.replace(logs, val_sessions=val), staged(),
                                   progress=False)
    assert all(s.artifact.fresh for s in revalidated.values())


def test_beam_and_eval_every_choose_the_kept_checkpoint_so_every_stage_key_holds_them(kit_home, world):
    cat, emb, logs, run = world
    ids = vrq.semantic_ids(cat, emb, cat.artifact, SIDS)
    gen.train_stages(cat, run, ids, logs, staged(), progress=False)
    for change in ({"beam": 12}, {"eval_every": 2}):
        again = gen.train_stages(cat, run, ids, logs, staged(**change), progress=False)
        assert all(s.artifact.fresh for s in again.values()), change
        assert again["pretrain"].model.cfg == staged(**change)


def _other(value):
    """Another value of a settings field, of its type (valid or not: only the key is computed)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, tuple):
        return (*value, *value[-1:])
    return value * 2 + 1


def test_every_gen_setting_is_in_each_stage_key_or_excluded_with_a_reason():
    names = {f.name for f in dataclasses.fields(gen.GenConfig)}
    cfg = gen.GenConfig()

    def key(stage, settings):
        return store.stage_key(f"gen_{stage}", gen.train.stage_params(settings, stage))

    for stage in gen.STAGES:
        excluded = gen.train.KEY_EXCLUDED[stage]
        assert set(excluded) <= names and all(reason.strip() for reason in excluded.values()), stage
        at_default = set(gen.train.KEYED_WHEN_SET)  # keyed only when set away from the default
        assert set(gen.train.stage_params(cfg, stage)) == names - set(excluded) - at_default
        for name in names - set(excluded):  # the key does move with each keyed field
            other = dataclasses.replace(cfg, **{name: _other(getattr(cfg, name))})
            assert key(stage, other) != key(stage, cfg), (stage, name)
    # a later stage continues from the earlier one: it is keyed on everything the earlier one is
    for earlier, later in zip(gen.STAGES, gen.STAGES[1:], strict=False):
        assert set(gen.train.KEY_EXCLUDED[later]) <= set(gen.train.KEY_EXCLUDED[earlier])
    assert not gen.train.KEY_EXCLUDED["dpo"]


def _one_logged_session():
    """Five SKUs shown at positions 0-4; 11 and 13 clicked, 13 ordered."""
    log = pandas.DataFrame({"session": 0, "view_id": 0, "position": range(5), "item_id": [10, 11, 12, 13, 14],
                        "clicked": [False, True, False, True, False],
                        "ordered": [False, False, False, True, False]})
    emb, tok = np.ones((1, 4), np.float32), np.ones((1, 2, 4), np.float32)
    return types.SimpleNamespace(train_log=log, train_histories={0: [7]}), emb, tok


@pytest.mark.parametrize("pairs, expected", [
    ("graded", {11: {10, 12, 14}, 13: {10, 11, 12, 14}}),  # order ≻ click ≻ shown
    ("clicks", {11: {10, 12, 14}, 13: {10, 12, 14}}),  # the order counts as a click
    ("skip_above", {11: {10}, 13: {10, 11, 12}}),  # only what was shown above the preferred SKU
])
def test_dpo_pairs_follow_the_rule_by_hand(pairs, expected):
    logs, emb, tok = _one_logged_session()
    queries, chosen, rejected = gen.preference_lists(logs, emb, tok, 3, pairs=pairs)
    got = {int(c): set(r[r >= 0].tolist()) for c, r in zip(chosen, rejected, strict=True)}
    assert got == expected
    assert (queries.history[:, -1] == 7).all() and (queries.task == 1).all()


def test_sft_on_orders_keeps_only_what_was_bought():
    logs, emb, tok = _one_logged_session()
    clicks = gen.sft_examples(logs, emb, tok, 3, order_weight=3.0)
    assert clicks.targets.tolist() == [11, 13] and clicks.weights.tolist() == [1.0, 4.0]
    orders = gen.sft_examples(logs, emb, tok, 3, order_weight=3.0, on="orders")
    assert orders.targets.tolist() == [13] and orders.weights.tolist() == [1.0]
    with pytest.raises(ValueError, match="clicks or orders"):
        gen.sft_examples(logs, emb, tok, 3, order_weight=3.0, on="views")


def test_new_training_signal_settings_keep_old_checkpoints_valid():
    cfg = gen.GenConfig()
    for stage in gen.STAGES:  # at their defaults the new settings are not in any key
        assert not set(gen.train.KEYED_WHEN_SET) & set(gen.train.stage_params(cfg, stage))
    assert gen.train.stage_params(dataclasses.replace(cfg, sft_on="orders"), "sft")["sft_on"] == "orders"
    assert "dpo_pairs" not in gen.train.stage_params(dataclasses.replace(cfg, dpo_pairs="clicks"), "sft")


def test_item_attributes_number_each_column_after_the_last():
    items = pandas.DataFrame({"fine_type": ["chair", "lamp", "chair"], "colour": ["red", "red", "blue"],
                              "creator": ["a", "b", "c"]})
    # types chair 0, lamp 1; colours blue 2, red 3; creators a 4, b 5, c 6
    assert gen.item_attributes(items).tolist() == [[0, 3, 4], [1, 3, 5], [0, 2, 6]]
    with pytest.raises(ValueError, match="needs item columns creator"):
        gen.item_attributes(items.drop(columns="creator"))


def test_attribute_histories_let_the_encoder_see_what_the_clicks_reveal(tmp_path):
    n = 60
    attributes = np.stack([np.arange(n) % 3, 3 + np.arange(n) % 4, 7 + np.arange(n) % 2], 1)
    q = tiny_queries(n_items=n)
    recoloured = attributes.copy()
    recoloured[:, 1] = 3 + (recoloured[:, 1] - 2) % 4  # every SKU another colour, SIDs unchanged

    def memory(model, table):
        """Each query's encoder outputs at the positions it attends to: (B, max over positions)."""
        model.item_attributes.copy_(torch.as_tensor(table))
        with torch.no_grad():
            mem = model.encode(q)
        return mem.memory.masked_fill(mem.mask[..., None], 0.0)

    with_attributes = tiny_model(history_items="attributes", attributes=attributes)
    changed = (memory(with_attributes, recoloured) - memory(with_attributes, attributes)).abs().amax((1, 2))
    assert changed[0] == 0 and (changed[1:] > 1e-4).all()  # query 0 has no history: nothing to recolour
    plain = tiny_model()
    assert not hasattr(plain, "item_attributes")  # the SID-only model is as before
    with pytest.raises(ValueError, match="needs each SKU's attributes"):
        tiny_model(history_items="attributes")
    # the attributes travel with the checkpoint
    path = tmp_path / "model.pt"
    gen.save_model(with_attributes, path, "fp")
    ids = types.SimpleNamespace(codes=with_attributes.trie.codes, sizes=with_attributes.trie.sizes,
                                item_vectors=tiny_vectors(n))
    loaded = gen.load_model(path, ids)
    assert torch.equal(loaded.item_attributes, with_attributes.item_attributes)
    with torch.no_grad():
        assert torch.allclose(loaded.encode(q).memory, with_attributes.encode(q).memory)


def test_empty_history_and_no_user_still_give_real_skus(world):
    cat, emb, logs, run = world
    model = tiny_model(n=len(cat.items), sizes=(6, 6, 6), dim=emb.shape[1])
    empty = gen.make_queries(emb, run.tokens, [0, 1, 2], [[], [], []], 4)
    assert (empty.history == -1).all() and (empty.task == 1).all()
    none = gen.make_queries(emb, run.tokens, [0, 1, 2], None, 4)
    for q in (empty, none):
        assert (gen.beam_search(model, q, 5, beam=8)[0] >= 0).all()
    with pytest.raises(ValueError, match="3 histories for 2 queries"):
        gen.make_queries(emb, run.tokens, [0, 1], [[], [], []], 4)


def test_bad_settings():
    for override, message in (({"dpo": "ranked"}, "pairwise"), ({"d_model": 30, "heads": 4}, "multiple"),
                               ({"sft_replay": 1.0}, "sft_replay"), ({"depth": 3}, "unknown GEN"),
                               ({"sft_on": "views"}, "sft_on"), ({"dpo_pairs": "all"}, "skip_above"),
                               ({"history_items": "ids"}, "history_items")):
        with pytest.raises(ValueError, match=message):
            gen.GenConfig.from_overrides(override)


def test_item_vectors_can_be_swapped_without_touching_the_model():
    model, q = tiny_model(), tiny_queries(b=8)
    before = gen.beam_search(model, q, 8, beam=8)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    same = model.with_item_vectors(tiny_vectors())
    assert all(np.array_equal(a, b) for a, b in zip(gen.beam_search(same, q, 8, beam=8), before, strict=True))
    other = model.with_item_vectors(np.random.default_rng(9).normal(size=(60, 16)))
    assert not np.array_equal(gen.beam_search(other, q, 8, beam=8)[0], before[0])
    assert other.token.weight is model.token.weight  # the weights are shared, not copied
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in state.items())
    again = gen.beam_search(model, q, 8, beam=8)
    assert all(np.array_equal(a, b) for a, b in zip(again, before, strict=True))
    with pytest.raises(ValueError, match=r"shape of the model's buffer \(n_items, d\) = \(60, 16\)"):
        model.with_item_vectors(np.zeros((60, 8)))


def test_prior_bonus_lifts_the_chosen_skus_and_leaves_the_model_alone():
    model, q = tiny_model(), tiny_queries(b=8)
    before = gen.beam_search(model, q, 8, beam=8)
    same = model.with_prior_bonus(np.zeros(60))
    assert all(np.array_equal(a, b) for a, b in zip(gen.beam_search(same, q, 8, beam=8), before, strict=True))
    lifted = np.zeros(60, bool)
    lifted[[5, 17, 42]] = True
    boosted = gen.beam_search(model.with_prior_bonus(5.0 * lifted), q, 8, beam=8)[0]
    assert np.isin(boosted[:, :3], np.flatnonzero(lifted)).all()  # a huge bonus puts them first
    again = gen.beam_search(model, q, 8, beam=8)
    assert all(np.array_equal(a, b) for a, b in zip(again, before, strict=True))
    assert "prior_bonus" not in model.state_dict()  # never saved into a checkpoint
    with pytest.raises(ValueError, match="one value per SKU"):
        model.with_prior_bonus(np.zeros(3))


def test_prior_factor_scales_the_learned_prior_at_serving_only():
    """Factor 0 is the decoder alone (as if no prior were given), 2 doubles the prior's term
    (the formula), 1 changes nothing; the model itself is never touched."""
    model, q = tiny_model(), tiny_queries(b=6)
    before = gen.beam_search(model, q, 8, beam=8)
    with torch.no_grad():
        mem = model.encode(q)
        rows = torch.arange(len(q))
        nodes = torch.zeros(len(q), dtype=torch.long)
        hidden = model.decode(mem.memory, mem.mask, torch.zeros(len(q), 0, dtype=torch.long))[:, 0]
        logits = model.out[0](hidden)
        child = model.child_rows(0, nodes)
        prior = mem.prior.at(0, rows, child)
        alone = model.with_prior_factor(0.0).level_logprobs(hidden, 0, nodes, mem.prior, rows)
        torch.testing.assert_close(alone, model.level_logprobs(hidden, 0, nodes, None, rows), rtol=0, atol=0)
        doubled = model.with_prior_factor(2.0).level_logprobs(hidden, 0, nodes, mem.prior, rows)
        expected = logits + 2.0 * model.log_prior_scale[0].exp() * prior
        expected = torch.log_softmax(expected.masked_fill(child < 0, float("-inf")), -1)
        torch.testing.assert_close(doubled, expected)
    same = gen.beam_search(model.with_prior_factor(1.0), q, 8, beam=8)
    assert all(np.array_equal(a, b) for a, b in zip(same, before, strict=True))
    assert not all(np.array_equal(a, b) for a, b in
                   zip(gen.beam_search(model.with_prior_factor(0.0), q, 8, beam=8), before, strict=True))
    assert model.prior_factor == 1.0 and "prior_factor" not in model.state_dict()
    with pytest.raises(ValueError, match="finite number >= 0"):
        model.with_prior_factor(-1.0)


def test_cold_prior_sweep_chooses_on_validation_within_the_warm_tolerance(kit_home, world):
    cat, emb, logs, run = world
    ids = vrq.semantic_ids(cat, emb, cat.artifact, SIDS)
    model = gen.train_stages(cat, run, ids, logs, staged(beam=10), progress=False)["dpo"].model
    cold = cat.items["cold"].to_numpy()
    bonus, table = gen.cold_prior_sweep(model, logs, emb, run.tokens, cold, [0.1, 5.0], 4, tolerance=0.02,
                                        beam=10)
    assert list(table.index) == [0.0, 0.1, 5.0] and table.loc[0.0, "allowed"]
    allowed = table[table["allowed"]]
    assert bonus in allowed.index
    assert table.loc[bonus, "cold recall_exact@10"] == allowed["cold recall_exact@10"].max()
    # an oracle for one row: the boosted model scored on cold validation sessions by hand
    q = gen.session_queries(logs, emb, run.tokens, 4, split="cold_val")
    lists = gen.beam_search(model.with_prior_bonus(5.0 * cold), q, 10, beam=10)[0]
    exact = metrics.hit_rate(lists, logs.cold_val_sessions["intent"].to_numpy(), 10)
    assert table.loc[5.0, "cold recall_exact@10"] == pytest.approx(exact)


def test_prior_factor_sweep_chooses_the_best_validation_hr_with_ties_to_the_learned_scale(kit_home, world):
    cat, emb, logs, run = world
    ids = vrq.semantic_ids(cat, emb, cat.artifact, SIDS)
    model = gen.train_stages(cat, run, ids, logs, staged(beam=10), progress=False)["dpo"].model
    factor, table = gen.prior_factor_sweep(model, logs, emb, run.tokens, [0.0, 4.0, 4.0], 4, beam=10)
    assert list(table.index) == [0.0, 1.0, 4.0]  # 1 (the learned scales) always, each factor once
    best = table["val hr@10"].max()
    assert table.loc[factor, "val hr@10"] == best
    if table.loc[1.0, "val hr@10"] == best:
        assert factor == 1.0
    # an oracle for one row: the scaled model scored on the validation sessions by hand
    q = gen.session_queries(logs, emb, run.tokens, 4, split="val")
    lists = gen.beam_search(model.with_prior_factor(4.0), q, 10, beam=10)[0]
    hr = metrics.hit_rate(lists, logs.val_sessions["ordered"].to_numpy(), 10)
    assert table.loc[4.0, "val hr@10"] == pytest.approx(hr)


@pytest.mark.parametrize("steps", [1, 9, 10, 11, 20])
def test_the_learning_rate_schedule_runs_for_any_number_of_steps(steps):
    opt, sched = gen.train._optimiser(tiny_model(), 1e-3, steps)
    rates = []
    for _ in range(steps):  # OneCycleLR divided by zero at 10 steps before the warm-up fix
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 < r <= 1e-3 * (1 + 1e-9) for r in rates)
    if steps >= 10:  # warm-up (at least one step) to the peak, then annealed well below it
        assert max(rates) > 0.9e-3 and rates[-1] < 0.1 * max(rates) and rates[0] < max(rates)
