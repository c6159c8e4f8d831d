"""Shopper simulator invariants and the A/B test (on a synthetic catalogue)."""

import numpy as np
import pytest
from conftest import fake_catalogue

from ovkit import mca, sim

CFG = sim.SimConfig(n_users=40, train_sessions=10, test_sessions=2, explore_pool=30)
MCA = mca.MCAConfig(recall=40, prerank=20)


@pytest.fixture(scope="module")
def world():
    cat, emb = fake_catalogue(n_models=30, colourways=3, query_views=9)
    return cat, emb, sim.simulate(cat, emb, CFG, retrieve=mca.Cascade(cat, emb, MCA).retrieve)


def test_click_through_falls_with_position(world):
    _, _, logs = world
    ctr = logs.train_log.groupby("position")["clicked"].mean().to_numpy()
    assert ctr[0] > ctr[4] > 0 and ctr[:3].mean() > ctr[-3:].mean()
    assert (logs.train_log["ordered"] <= logs.train_log["clicked"]).all()  # an order needs a click


def test_same_seed_same_logs(world):
    cat, emb, logs = world
    retrieve = mca.Cascade(cat, emb, MCA).retrieve
    again = sim.simulate(cat, emb, CFG, retrieve=retrieve)
    assert logs.train_log.equals(again.train_log) and logs.test_sessions.equals(again.test_sessions)
    other = sim.simulate(cat, emb, sim.SimConfig(**{**CFG.__dict__, "seed": 1}), retrieve=retrieve)
    assert not logs.train_log.equals(other.train_log)


def test_sessions_use_photos_of_their_split_and_intent(world):
    cat, _, logs = world
    views = cat.views.set_index("view_id")
    for sessions, split in ((logs.train_sessions, "train"), (logs.test_sessions, "test")):
        assert (views.loc[sessions["view_id"], "split"].to_numpy() == split).all()
        assert (views.loc[sessions["view_id"], "item_id"].to_numpy() == sessions["intent"].to_numpy()).all()
    assert not set(logs.train_log["view_id"]) & set(cat.views.loc[cat.views["split"] == "test", "view_id"])


def test_cold_sessions_are_their_own_slice(world):
    cat, _, logs = world
    cold = set(cat.items.loc[cat.items["cold"], "item_id"])
    views = cat.views.set_index("view_id")
    for split in ("test", "val"):
        sessions, hists = logs.sessions(f"cold_{split}")
        assert set(sessions["intent"]) <= cold and len(sessions) == CFG.n_users * CFG.cold_sessions
        assert (views.loc[sessions["view_id"], "split"].to_numpy() == split).all()
        assert set(hists) == set(sessions["session"])
        warm, _ = logs.sessions(split)
        assert not set(warm["intent"]) & cold  # the warm slice stays warm
        assert not set(sessions["session"]) & set(warm["session"])
    assert not set(logs.train_sessions["intent"]) & cold  # never logged
    no_cold = sim.simulate(cat, world[1], sim.SimConfig(**{**CFG.__dict__, "cold_sessions": 0}),
                           retrieve=mca.Cascade(cat, world[1], MCA).retrieve)
    assert no_cold.test_sessions.equals(logs.test_sessions)  # adding the slice changed nothing else
    with pytest.raises(ValueError, match="no cold_test sessions"):
        no_cold.sessions("cold_test")
    with pytest.raises(ValueError, match="split must be one of"):
        logs.sessions("holdout")


def test_relevance_order_and_offline_targets(world):
    cat, _, logs = world
    w = logs.world
    sibling = cat.items[(cat.items["model_id"] == 0) & (cat.items["item_id"] != 0)]["item_id"].iloc[0]
    same_type = cat.items[(cat.items["model_id"] == 4)]["item_id"].iloc[0]  # model 4: the same fine type
    other = cat.items[(cat.items["model_id"] == 1)]["item_id"].iloc[0]
    rel = w.relevance(np.array(0), np.array([0, sibling, same_type, other]))
    assert rel[0] > rel[1] > rel[2] > rel[3] > 0
    test = logs.test_sessions
    assert 0.2 < (test["ordered"] == test["intent"]).mean() < 0.9  # mostly, but not always, the intent


@pytest.mark.parametrize("override,message", [({"rel_model": 1.5}, r"probability.*\[0, 1\]"),
                                              ({"order_base": -0.1}, r"\[0, 1\]"),
                                              ({"n_users": 0}, ">= 1"), ({"budget": 3}, "unknown SIM"),
                                              ({"exposure": "all"}, "visual, variants")])
def test_bad_simulator_parameters(override, message):
    with pytest.raises(ValueError, match=message):
        sim.SimConfig.from_overrides(override)


def test_variants_follow_each_shown_sku_by_hand():
    model_of = np.array([0, 0, 0, 1, 1, 2, 3])  # SKUs 0-2 one product, 3-4 another
    ranked = np.array([[3, 5, 1, 6], [6, 2, 5, 0]])
    assert sim.with_variants(ranked, model_of, 5).tolist() == [[3, 4, 5, 1, 0], [6, 2, 0, 1, 5]]


def test_variant_exposure_shows_colourways_and_changes_nothing_else(world):
    cat, emb, logs = world
    retrieve = mca.Cascade(cat, emb, MCA).retrieve
    variants = sim.SimConfig(**{**CFG.__dict__, "exposure": "variants"})
    shown = sim.simulate(cat, emb, variants, retrieve=retrieve)
    model_of = cat.items["model_id"].to_numpy()

    def products_per_list(log):
        return log.assign(model=model_of[log["item_id"]]).groupby("session")["model"].nunique().mean()

    assert products_per_list(shown.train_log) < products_per_list(logs.train_log)  # siblings fill the list
    assert shown.train_log.groupby("session").size().eq(CFG.list_size).all()
    # shoppers, sessions and test targets are the world's, not the logging policy's
    assert shown.train_sessions.equals(logs.train_sessions) and shown.test_sessions.equals(logs.test_sessions)


def test_histories_hold_only_earlier_clicks(world):
    _, _, logs = world
    log = logs.train_log
    first = logs.train_sessions.groupby("user")["session"].min()
    assert all(logs.train_histories[s] == [] for s in first)
    clicked = log[log["clicked"]].groupby("session")["item_id"].apply(list)
    user0 = logs.train_sessions[logs.train_sessions["user"] == 0]["session"].tolist()
    expected = []
    for s in user0:
        assert logs.train_histories[s] == expected
        expected = expected + clicked.get(s, [])


AB = sim.ABConfig(users=60, sessions=4, warmup=5, resamples=500)


def _oracle(cat):
    """A server that knows the simulator's secret: the SKU in the photo first, then its siblings."""
    item_of = cat.views.set_index("view_id")["item_id"]
    model = cat.items["model_id"].to_numpy()

    def serve(view_ids, histories):
        rows = []
        for v in view_ids:
            intent = item_of[v]
            others = [i for i in np.argsort(model != model[intent], kind="stable") if i != intent]
            rows.append([intent] + others[:9])
        return np.array(rows)
    return serve


def _random(cat, seed=0):
    rng = np.random.default_rng(seed)
    return lambda view_ids, histories: np.stack([rng.choice(len(cat.items), 10, replace=False)
                                                 for _ in view_ids])


def test_ab_paired_identical_arms_tie_exactly_and_a_better_arm_wins(world):
    cat, emb, _ = world
    retrieve = mca.Cascade(cat, emb, MCA).retrieve
    oracle = _oracle(cat)
    same = sim.ab_test(cat, {"a": oracle, "b": oracle}, CFG, AB, retrieve)
    lift = same.lift("a", "b")
    assert (lift.to_numpy() == 0).all()  # common random numbers: the same lists get the same reactions
    result = sim.ab_test(cat, {"random": _random(cat), "oracle": oracle}, CFG, AB, retrieve)
    summary = result.summary()
    assert summary.loc["oracle", "ctr"] > 2 * summary.loc["random", "ctr"]
    low, ctr, high = summary.loc["random", ["ctr_ci_low", "ctr", "ctr_ci_high"]]
    assert low < ctr < high
    assert int(summary.loc["oracle", "sessions"]) == AB.users * AB.sessions
    lift = result.lift("random", "oracle")
    assert lift.loc["ctr", "ci_low"] > 0.5 and lift.loc["orders_per_session", "ci_low"] > 0
    sessions = result.sessions
    assert (sessions["orders"] <= sessions["clicks"]).all()
    assert (sessions["clicks_exact"] + sessions["clicks_colourway"] <= sessions["clicks"]).all()
    assert sessions[sessions["arm"] == "oracle"]["found"].all()  # it always serves the SKU in the photo
    kinds = result.clicks_by_kind()
    assert kinds.loc["oracle", "found"] == 1.0
    per_100 = 100 * sessions.groupby("arm")["clicks"].mean()
    total = kinds.drop(columns="found").sum(axis=1)
    assert total.to_numpy() == pytest.approx(per_100[kinds.index].to_numpy())


def test_ab_split_assigns_each_user_to_one_arm(world):
    cat, emb, _ = world
    retrieve = mca.Cascade(cat, emb, MCA).retrieve
    oracle = _oracle(cat)
    split = sim.ABConfig(**{**AB.__dict__, "design": "split"})
    result = sim.ab_test(cat, {"a": oracle, "b": oracle}, CFG, split, retrieve)
    arms_per_user = result.sessions.groupby("user")["arm"].nunique()
    assert (arms_per_user == 1).all() and len(arms_per_user) == AB.users
    lift = result.lift("a", "b")
    assert (lift["ci_low"] < 0).all() and (lift["ci_high"] > 0).all()  # an A/A test finds nothing


def test_ab_histories_are_the_warmup_plus_the_arms_own_clicks(world):
    cat, emb, _ = world
    seen = []

    def recorder(view_ids, histories):
        seen.append([list(h) for h in histories])
        return _random(cat, len(seen))(view_ids, histories)
    result = sim.ab_test(cat, {"only": recorder}, CFG, AB, mca.Cascade(cat, emb, MCA).retrieve)
    sessions = result.sessions
    assert any(len(h) for h in seen[0])  # the warm-up gave shoppers a history
    for step in range(1, AB.sessions):
        clicks = sessions[sessions["step"] == step - 1]["clicks"].to_numpy()
        pairs = list(zip(seen[step - 1], seen[step], strict=True))
        assert [len(after) - len(before) for before, after in pairs] == clicks.tolist()
        assert all(after[: len(before)] == before for before, after in pairs)


def test_ab_refuses_bad_settings(world):
    cat, emb, _ = world
    retrieve = mca.Cascade(cat, emb, MCA).retrieve
    with pytest.raises(ValueError, match="equals SIM seed"):
        sim.ab_test(cat, {"a": _oracle(cat)}, CFG, sim.ABConfig(users=5, sessions=1, seed=CFG.seed), retrieve)
    with pytest.raises(ValueError, match="served lists of shape"):
        sim.ab_test(cat, {"a": lambda v, h: np.zeros((len(v), 3), int)}, CFG, AB, retrieve)
    with pytest.raises(ValueError, match="paired' or 'split"):
        sim.ABConfig.from_overrides({"design": "both"})
    with pytest.raises(ValueError, match="unknown AB"):
        sim.ABConfig.from_overrides({"user": 5})


def test_paired_arms_share_their_dice_and_split_arms_do_not():
    assert sim.session_dice("paired", 3, 0) == sim.session_dice("paired", 3, 1)  # common random numbers
    assert sim.session_dice("paired", 3, 0) != sim.session_dice("paired", 4, 0)  # a new draw per step
    split = {sim.session_dice("split", step, arm) for step in range(8) for arm in range(4)}
    assert len(split) == 32  # every (step, arm) its own dice
