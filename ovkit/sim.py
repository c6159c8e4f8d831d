"""Shopper simulator (notebooks 03 and 06): users, sessions, exposures, clicks and orders.

Every number here is a *kit choice* (the paper's users are real); the simulator's ground truth —
preferences, intents — is never handed to a model, only the logs it produces.

- **Users** have latent preferences over product type, colour, creator and price band.
- **A session** starts from an *intended* SKU, drawn from the user's preferences, and a query photo
  of it from the right split (training sessions: training photos; test sessions: test photos).
- **Clicks** on a served list: ``P(click at position k) = bias(k) · relevance(item, intent) ·
  appeal(user, item)``, with relevance exact SKU > same model in another colour > same type >
  same category > other, and appeal ∈ (0, 1] from the user's preferences.
- **Orders** given a click: ``order_base · appeal · price_fit``.
- **Offline target** of a test session: the SKU the user would order if shown everything —
  sampled ∝ relevance · appeal · price_fit over the whole catalogue, so it does not depend on what
  a logging policy happened to show (the clicked target likewise, without the price term).
- **Online A/B test** (notebook 06): fresh shoppers (a new seed) with a warm-up history, served
  in turn by each arm; the simulator's clicks and orders give CTR, CVR and orders per session.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import progress, with_overrides
from .metrics import lift_ci, ratio_ci
from .recall import VisualRecall

# What the logging policy shows (a kit choice about the platform, not the shoppers, issue 28): ``visual``
# a noisy visual top-k; ``variants`` the same ranking with every shown product's other colourways right
# after it, as shops show a product's variants, cut to the list size.
EXPOSURES = ("visual", "variants")


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings (kit choices)."""

    n_users: int = 150  # shoppers
    train_sessions: int = 50  # logged sessions per user (the training logs)
    test_sessions: int = 4  # held-out sessions per user (offline evaluation)
    cold_sessions: int = 4  # more per user that start from a cold SKU's photo (their own slice; 0: none)
    list_size: int = 10  # items exposed per session
    position_decay: float = 1.0  # bias(k) = 1 / log2(k + 2) ** decay
    rel_exact: float = 1.0  # relevance of the intended SKU
    rel_model: float = 0.5  # each SKU of the same 3D model in another colourway
    rel_type: float = 0.3  # all other SKUs of the same product type together (shared among them)
    rel_category: float = 0.1  # all other SKUs of the same room category together
    rel_other: float = 0.05  # all remaining SKUs together
    taste: float = 1.5  # how strongly preferences drive appeal (0: everybody alike)
    intent_temperature: float = 1.0  # softmax temperature of the intended-SKU draw
    order_base: float = 0.5  # P(order | click) for a perfectly appealing, affordable item
    price_sensitivity: float = 1.0  # how fast price_fit falls away from the user's price band
    explore: float = 2.0  # logging policy: Gumbel noise on visual scores (0: greedy)
    explore_pool: int = 50  # logging policy: how many recalled candidates the noisy top-k draws from
    exposure: str = "visual"  # logging policy: visual (noisy top-k) | variants (see EXPOSURES)
    seed: int = 0

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> SimConfig:
        return with_overrides(cls, overrides, "SIM")

    def validate(self) -> None:
        for name in ("rel_exact", "rel_model", "rel_type", "rel_category", "rel_other", "order_base"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"SIM {name} is a probability and must be in [0, 1], got {value}")
        for name in ("n_users", "train_sessions", "list_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SIM {name} must be >= 1, got {getattr(self, name)}")
        if self.exposure not in EXPOSURES:
            raise ValueError(f"SIM exposure must be one of {', '.join(EXPOSURES)}, got {self.exposure!r}")
        for name in ("taste", "intent_temperature", "price_sensitivity", "explore", "position_decay"):
            if getattr(self, name) < 0 or (name == "intent_temperature" and self.intent_temperature == 0):
                raise ValueError(f"SIM {name} must be positive, got {getattr(self, name)}")


# --------------------------------------------------------------------------- users


@dataclass
class World:
    """The simulator's hidden state: user preferences and the item facts it reacts to."""

    cfg: SimConfig
    items: pd.DataFrame
    appeal: np.ndarray  # (users, items) in (0, 1]: how much a user likes an item, all else equal
    price_fit: np.ndarray  # (users, items) in (0, 1]: affordability for this user
    utility: np.ndarray  # (users, items) preference score behind both (drives intents)

    def relevance(self, intent: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Relevance (…, K) of candidate SKUs to the intended SKU(s) (…,).

        Exact SKU and model siblings get their relevance each; the type, category and "other"
        levels are masses shared by the group's SKUs, so the share of intended vs. look-alike
        purchases does not drift with the catalogue's size.
        """
        intent = np.asarray(intent)[..., None]
        c = self.cfg
        group = self.group_sizes
        rel = c.rel_other / group["other"][intent]
        same = lambda column: self.same(column, candidates, intent)  # noqa: E731
        rel = np.where(same("category"), c.rel_category / group["category"][intent], rel)
        rel = np.where(same("fine_type"), c.rel_type / group["fine_type"][intent], rel)
        rel = np.where(self.same("model_id", candidates, intent), c.rel_model, rel)
        return np.where(candidates == intent, c.rel_exact, rel)

    def same(self, column, a, b):
        values = self.items[column].to_numpy()
        return values[a] == values[b]

    @property
    def group_sizes(self) -> dict:
        """For each SKU, how many *other* SKUs share each relevance level with it (at least 1)."""
        if not hasattr(self, "_groups"):
            it = self.items
            n_model = it.groupby("model_id")["model_id"].transform("size").to_numpy()
            n_type = it.groupby("fine_type")["fine_type"].transform("size").to_numpy()
            n_cat = it.groupby("category")["category"].transform("size").to_numpy()
            both = it.groupby(["category", "fine_type"])["model_id"].transform("size").to_numpy()
            self._groups = {"fine_type": np.maximum(n_type - n_model, 1),
                            "category": np.maximum(n_cat - both, 1),
                            "other": np.maximum(len(it) - n_cat - n_type + both, 1)}
        return self._groups


def make_world(items: pd.DataFrame, cfg: SimConfig) -> World:
    """Draw users' latent preferences (seeded) and their appeal / price fit for every SKU."""
    rng = np.random.default_rng([cfg.seed, 7])
    for column in ("fine_type", "colour", "creator", "price", "model_id", "category"):
        if column not in items:
            raise ValueError(f"the simulator needs item column {column!r}; the items table has "
                             f"{', '.join(items.columns)}")
    n = cfg.n_users
    types, type_of = np.unique(items["fine_type"].astype(str), return_inverse=True)
    colours, colour_of = np.unique(items["colour"].astype(str), return_inverse=True)
    creators, creator_of = np.unique(items["creator"].astype(str), return_inverse=True)
    log_price = np.log(items["price"].to_numpy(float))
    type_taste = np.log(rng.dirichlet(np.full(len(types), 0.7), size=n) + 1e-3)  # a few favourite types
    colour_taste = rng.normal(0, 1.0, size=(n, len(colours)))
    creator_taste = rng.normal(0, 0.5, size=(n, len(creators)))
    price_centre = rng.normal(np.median(log_price), 0.5, size=n)
    utility = (0.5 * type_taste[:, type_of] + colour_taste[:, colour_of] + creator_taste[:, creator_of])
    utility = (utility - utility.mean(1, keepdims=True)) / (utility.std(1, keepdims=True) + 1e-9)
    appeal = 1 / (1 + np.exp(-cfg.taste * utility - 1.0))  # ~0.73 at average taste
    price_fit = np.exp(-cfg.price_sensitivity * np.abs(log_price[None, :] - price_centre[:, None]))
    return World(cfg, items.reset_index(drop=True), appeal, price_fit, utility)


# --------------------------------------------------------------------------- sessions


def draw_sessions(world: World, views: pd.DataFrame, split: str, per_user: int, seed: int) -> pd.DataFrame:
    """Sessions of every user: intended SKU (from preferences) and a query photo of it in ``split``.

    Only SKUs with a query photo in ``split`` can be intended.
    """
    rng = np.random.default_rng([world.cfg.seed, seed])
    photos = views[(views["kind"] == "query") & (views["split"] == split)]
    if photos.empty:
        raise ValueError(f"no query photos in split {split!r}: cannot start sessions")
    by_item = photos.groupby("item_id")["view_id"].apply(np.asarray)
    eligible = by_item.index.to_numpy()
    rows = []
    for user in range(world.cfg.n_users):
        logits = world.utility[user, eligible] / world.cfg.intent_temperature
        p = np.exp(logits - logits.max())
        intents = rng.choice(eligible, per_user, p=p / p.sum())
        for intent in intents:
            rows.append({"user": user, "intent": int(intent), "view_id": int(rng.choice(by_item[intent]))})
    sessions = pd.DataFrame(rows)
    sessions.insert(0, "session", np.arange(len(sessions)))
    return sessions


def position_bias(k: int, decay: float) -> np.ndarray:
    """Examination probability of positions 0..k-1: 1 / log2(position + 2) ** decay."""
    return 1 / np.log2(np.arange(k) + 2) ** decay


def react(world: World, sessions: pd.DataFrame, served: np.ndarray, seed: int):
    """Clicks and orders (S, K) bool on the served lists (S, K) of SKU ids."""
    rng = np.random.default_rng([world.cfg.seed, seed, 1])
    served = np.asarray(served)
    if served.min() < 0 or served.max() >= len(world.items):
        raise ValueError("a served list holds SKU ids outside the catalogue")
    users = sessions["user"].to_numpy()[:, None]
    rel = world.relevance(sessions["intent"].to_numpy(), served)
    p_click = position_bias(served.shape[1], world.cfg.position_decay) * rel * world.appeal[users, served]
    clicks = rng.random(served.shape) < p_click
    p_order = world.cfg.order_base * world.appeal[users, served] * world.price_fit[users, served]
    orders = clicks & (rng.random(served.shape) < p_order)
    return clicks, orders


def offline_targets(world: World, sessions: pd.DataFrame, candidates: np.ndarray, seed: int):
    """The SKU each user would order and would click if shown all ``candidates``.

    Sampled ∝ relevance · appeal (· price_fit for the order), independent of any served list.
    """
    rng = np.random.default_rng([world.cfg.seed, seed, 2])
    candidates = np.asarray(candidates)
    ordered, clicked = [], []
    for intent, user in zip(sessions["intent"], sessions["user"], strict=True):
        click_w = world.relevance(np.array(intent), candidates) * world.appeal[user, candidates]
        order_w = click_w * world.price_fit[user, candidates]
        clicked.append(rng.choice(candidates, p=click_w / click_w.sum()))
        ordered.append(rng.choice(candidates, p=order_w / order_w.sum()))
    return np.array(ordered), np.array(clicked)


def histories(log: pd.DataFrame) -> dict[int, list[int]]:
    """Each user's clicked/ordered SKUs in session order (orders also count as clicks)."""
    events = log[log["clicked"]].sort_values(["session", "position"])
    return events.groupby("user")["item_id"].apply(list).to_dict()


def session_histories(sessions: pd.DataFrame, log: pd.DataFrame | None, base: dict | None = None) -> dict:
    """Session id → the user's clicked SKUs before that session.

    With ``log`` (the sessions' own log): clicks of the same user's earlier sessions, plus ``base``
    (user → earlier clicks, e.g. from the training logs).
    """
    base = base or {}
    clicked = {} if log is None else log[log["clicked"]].groupby("session")["item_id"].apply(list).to_dict()
    running, out = {}, {}
    for session, user in zip(sessions["session"], sessions["user"], strict=True):
        so_far = running.setdefault(user, list(base.get(user, [])))
        out[session] = list(so_far)
        so_far.extend(clicked.get(session, []))
    return out


def log_sessions(sessions: pd.DataFrame, served: np.ndarray, clicks, orders) -> pd.DataFrame:
    """Long format: one row per exposure (session, user, position, item_id, clicked, ordered)."""
    s, k = served.shape
    return pd.DataFrame({
        "session": np.repeat(sessions["session"].to_numpy(), k),
        "user": np.repeat(sessions["user"].to_numpy(), k),
        "view_id": np.repeat(sessions["view_id"].to_numpy(), k),
        "position": np.tile(np.arange(k), s),
        "item_id": served.ravel(),
        "clicked": np.asarray(clicks).ravel(),
        "ordered": np.asarray(orders).ravel(),
    })


def logging_policy(scores: np.ndarray, candidates: np.ndarray, k: int, explore: float, seed: int):
    """Visual retrieval with exploration: Gumbel noise (scale ``explore``) on the visual scores of
    the candidates, then the top ``k``. Returns (S, k) SKU ids."""
    rng = np.random.default_rng(seed)
    noisy = scores / 0.05 + explore * rng.gumbel(size=scores.shape)  # scores are cosines: sharpen first
    order = np.argsort(-noisy, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, 1)


def with_variants(ranked: np.ndarray, model_of: np.ndarray, k: int) -> np.ndarray:
    """Each ranked list (S, ≥k) with every SKU's other colourways (same ``model_of``, catalogue
    order) right after it, repeats dropped, cut to ``k``: (S, k)."""
    siblings = {m: list(group) for m, group in pd.Series(np.arange(len(model_of))).groupby(model_of)}
    lists = []
    for row in np.asarray(ranked):
        shown = dict.fromkeys(sku for item in row for sku in [item, *siblings[model_of[item]]])
        lists.append(list(shown)[:k])
    return np.array(lists, np.int64)


def logged(world: World, sessions: pd.DataFrame, retrieve, seed: int) -> pd.DataFrame:
    """Serve ``sessions`` with the logging policy (a noisy top-k of the first ``explore_pool``
    candidates of ``retrieve``; with ``exposure="variants"`` each shown product's colourways beside
    it) and log the shoppers' reactions (one row per exposure)."""
    cfg = world.cfg
    pool = max(cfg.explore_pool, cfg.list_size)
    cand, scores = retrieve(sessions["view_id"].to_numpy())
    cand, scores = cand[:, :pool], scores[:, :pool]
    served = logging_policy(scores, cand, cfg.list_size, cfg.explore, seed=cfg.seed)
    if cfg.exposure == "variants":
        served = with_variants(served, world.items["model_id"].to_numpy(), cfg.list_size)
    clicks, orders = react(world, sessions, served, seed=seed)
    return log_sessions(sessions, served, clicks, orders)


def _views(catalogue, cold: bool = False) -> pd.DataFrame:
    """Views of warm SKUs (sessions start from these), or of cold ones (their own slice)."""
    return catalogue.views[catalogue.items["cold"].to_numpy()[catalogue.views["item_id"].to_numpy()] == cold]


@dataclass
class Logs:
    """What one simulation produces: the world (hidden), training logs, test sessions and targets."""

    world: World
    train_sessions: pd.DataFrame
    train_log: pd.DataFrame  # one row per exposure
    test_sessions: pd.DataFrame  # with columns ordered / clicked (offline targets)
    train_histories: dict  # session → the user's clicks before it (training sessions)
    test_histories: dict  # session → the user's clicks in the training logs
    val_sessions: pd.DataFrame  # like test_sessions, on validation photos (for choosing settings)
    val_histories: dict
    # Sessions whose intended SKU is cold (no training photo, never in a logged session), on its
    # test or validation photos: a slice of their own, so the warm numbers above stay comparable.
    cold_test_sessions: pd.DataFrame | None = None
    cold_test_histories: dict | None = None
    cold_val_sessions: pd.DataFrame | None = None
    cold_val_histories: dict | None = None

    SPLITS = ("test", "val", "cold_test", "cold_val")

    def sessions(self, split: str = "test") -> tuple[pd.DataFrame, dict]:
        """(sessions, histories) of an evaluation split: test, val, cold_test or cold_val."""
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {', '.join(self.SPLITS)}, got {split!r}")
        sessions, hists = getattr(self, f"{split}_sessions"), getattr(self, f"{split}_histories")
        if sessions is None:
            raise ValueError(f"these logs have no {split} sessions (SIM cold_sessions=0 or no cold SKUs)")
        return sessions, hists


def simulate(catalogue, view_embeddings: np.ndarray, cfg: SimConfig, retrieve=None) -> Logs:
    """Users, logged training sessions (served by the logging policy) and test sessions.

    The logging policy takes the first ``explore_pool`` candidates of ``retrieve(view_ids)``
    (default: visual recall) and serves a noisy top-``list_size`` of them. Test sessions start
    from warm SKUs' test photos; their targets come from :func:`offline_targets`.
    """

    world = make_world(catalogue.items, cfg)
    if retrieve is None:
        pool = max(cfg.explore_pool, cfg.list_size)
        recall = VisualRecall(catalogue, view_embeddings)
        retrieve = lambda ids: recall.search(view_embeddings[ids], pool)  # noqa: E731
    warm_views = _views(catalogue)
    train = draw_sessions(world, warm_views, "train", cfg.train_sessions, seed=1)
    log = logged(world, train, retrieve, seed=1)
    test = draw_sessions(world, warm_views, "test", cfg.test_sessions, seed=2)
    test["session"] += len(train)
    test["ordered"], test["clicked"] = offline_targets(world, test, np.arange(len(catalogue.items)), seed=2)
    val = draw_sessions(world, warm_views, "val", cfg.test_sessions, seed=3)
    val["session"] += len(train) + len(test)
    val["ordered"], val["clicked"] = offline_targets(world, val, np.arange(len(catalogue.items)), seed=3)
    # test and validation sessions come after all logged ones: their history is the whole training log
    base = histories(log)
    logs = Logs(world, train, log, test, session_histories(train, log),
                session_histories(test, None, base=base), val, session_histories(val, None, base=base))
    cold_views = _views(catalogue, cold=True)
    first = len(train) + len(test) + len(val)
    for split, seed in (("test", 4), ("val", 5)):
        photos = (cold_views["split"] == split) & (cold_views["kind"] == "query")
        if not cfg.cold_sessions or not photos.any():
            continue
        cold = draw_sessions(world, cold_views, split, cfg.cold_sessions, seed=seed)
        cold["session"] += first
        first += len(cold)
        everything = np.arange(len(catalogue.items))
        cold["ordered"], cold["clicked"] = offline_targets(world, cold, everything, seed=seed)
        setattr(logs, f"cold_{split}_sessions", cold)
        setattr(logs, f"cold_{split}_histories", session_histories(cold, None, base=base))
    return logs


# --------------------------------------------------------------------------- online A/B test (notebook 06)


@dataclass(frozen=True)
class ABConfig:
    """Simulated online A/B test settings (kit choices)."""

    users: int = 1000  # fresh shoppers: a new draw of tastes, none of them in the training logs
    sessions: int = 8  # test sessions per shopper, in order: each sees the clicks of the earlier ones
    warmup: int = 20  # sessions per shopper before the test, served by the logging policy (their history)
    design: str = "paired"  # paired: each shopper meets both arms (two copies of the world); split: half each
    resamples: int = 2000  # bootstrap resamples (of whole shoppers) for the confidence intervals
    seed: int = 1  # must differ from SIM's seed, so users and sessions are new

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> ABConfig:
        cfg = with_overrides(cls, overrides, "AB")
        if cfg.design not in ("paired", "split"):
            raise ValueError(f"AB design must be 'paired' or 'split', got {cfg.design!r}")
        for name in ("users", "sessions", "resamples"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"AB {name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.warmup < 0:
            raise ValueError(f"AB warmup must be >= 0, got {cfg.warmup}")
        return cfg


@dataclass
class ABTest:
    """The A/B test's sessions, one row per (arm, session): user, step, intent, photo, and the
    exposures, clicks and orders it produced (``found``: the list held the SKU in the photo;
    ``clicks_exact`` / ``clicks_colourway``: clicks on it / on its other colourways)."""

    sessions: pd.DataFrame
    design: str
    resamples: int = 2000

    # metric → (numerator, denominator) columns of per_user(); n = sessions
    METRICS = {"ctr": ("clicks", "exposures"), "cvr": ("orders", "clicks"),
               "orders_per_session": ("orders", "n")}

    def per_user(self, arm: str) -> pd.DataFrame:
        """Totals per user of one arm (rows sorted by user, so paired arms line up)."""
        rows = self.sessions[self.sessions["arm"] == arm]
        if rows.empty:
            raise ValueError(f"no arm {arm!r}; arms: {', '.join(self.sessions['arm'].unique())}")
        totals = rows.groupby("user")[["exposures", "clicks", "orders"]].sum()
        return totals.assign(n=rows.groupby("user").size())

    def summary(self) -> pd.DataFrame:
        """Per arm: users, sessions, and each metric with its bootstrap 95% CI (resampling users)."""

        out = {}
        for arm in self.sessions["arm"].unique():
            users = self.per_user(arm)
            row = {"users": len(users), "sessions": int(users["n"].sum())}
            for name, (num, den) in self.METRICS.items():
                row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = ratio_ci(
                    users[num], users[den], resamples=self.resamples)
            out[arm] = row
        return pd.DataFrame(out).T

    def clicks_by_kind(self) -> pd.DataFrame:
        """Per arm: share of sessions whose list held the photographed SKU, and clicks per 100
        sessions on it, on its other colourways and on other products."""
        per = self.sessions.groupby("arm")[["found", "clicks_exact", "clicks_colourway", "clicks"]].mean()
        other = per["clicks"] - per["clicks_exact"] - per["clicks_colourway"]
        return pd.DataFrame({"found": per["found"], "the SKU in the photo": 100 * per["clicks_exact"],
                             "its other colourways": 100 * per["clicks_colourway"],
                             "other products": 100 * other})

    def lift(self, control: str, treatment: str) -> pd.DataFrame:
        """Relative lift (treatment / control − 1) of each metric with its bootstrap 95% CI."""

        c, t = self.per_user(control), self.per_user(treatment)
        rows = {}
        for name, (num, den) in self.METRICS.items():
            est, low, high = lift_ci((c[num], c[den]), (t[num], t[den]), paired=self.design == "paired",
                                     resamples=self.resamples)
            rows[name] = {"lift": est, "ci_low": low, "ci_high": high}
        return pd.DataFrame(rows).T


def session_dice(design: str, step: int, arm: int) -> int:
    """Seed of the click and order dice of an A/B test's sessions at ``step`` in ``arm``.

    ``paired``: the same dice in every arm (common random numbers), so a shopper who would click
    position 3 of a relevant list does so in both arms and the arms differ only by what they
    serve; ``split``: each arm its own dice, as two groups of real shoppers.
    """
    return 100 + step if design == "paired" else 100 + step + 10_000 * (arm + 1)


def ab_test(catalogue, arms: dict, sim_cfg: SimConfig, ab: ABConfig, retrieve) -> ABTest:
    """Serve fresh shoppers' sessions with each arm and let the simulator react.

    ``arms``: name → ``serve(view_ids, histories) -> (S, list_size) SKU ids``, histories being one
    list of SKU ids per session (oldest first). Shoppers come from a new world (``ab.seed``); before
    the test each gets ``ab.warmup`` sessions served by the logging policy over ``retrieve`` (their
    history), then ``ab.sessions`` test sessions on warm SKUs' test photos, in order: a session's
    history is the warm-up plus the clicks this arm earned in the shopper's earlier sessions.
    ``paired``: every shopper meets every arm, and a session's click/order dice are the same in all
    arms (common random numbers), so only the served lists differ. ``split``: shoppers are assigned
    to arms at random, as in a real A/B test (wider intervals).
    """


    if ab.seed == sim_cfg.seed:
        raise ValueError(f"AB seed ({ab.seed}) equals SIM seed: the A/B test's shoppers would be the "
                         f"training logs' shoppers. Pick another AB seed.")
    if not arms:
        raise ValueError("ab_test needs at least one arm")
    world = make_world(catalogue.items, dataclasses.replace(sim_cfg, n_users=ab.users, seed=ab.seed))
    views = _views(catalogue)
    base = {}
    if ab.warmup:
        warmup = draw_sessions(world, views, "train", ab.warmup, seed=5)
        base = histories(logged(world, warmup, retrieve, seed=5))
    test = draw_sessions(world, views, "test", ab.sessions, seed=6)
    test["step"] = test.groupby("user").cumcount()
    names = list(arms)
    if ab.design == "paired":
        members = {name: np.arange(ab.users) for name in names}
    else:
        order = np.random.default_rng([ab.seed, 9]).permutation(ab.users)
        members = {name: np.sort(order[i:: len(names)]) for i, name in enumerate(names)}
    clicked = {name: {u: list(base.get(u, [])) for u in members[name]} for name in names}
    rows = []
    for step in progress(range(ab.sessions), desc="A/B sessions", unit="step"):
        now = test[test["step"] == step]
        for arm, name in enumerate(names):
            part = now[now["user"].isin(members[name])]
            hist = [clicked[name][u] for u in part["user"]]
            served = np.asarray(arms[name](part["view_id"].to_numpy(), hist))
            if served.shape != (len(part), sim_cfg.list_size):
                raise ValueError(f"arm {name!r} served lists of shape {served.shape}, expected "
                                 f"{(len(part), sim_cfg.list_size)} (one list of list_size SKUs per session)")
            clicks, orders = react(world, part, served, seed=session_dice(ab.design, step, arm))
            for user, items, hit in zip(part["user"], served, clicks, strict=True):
                clicked[name][user].extend(items[hit].tolist())
            shown = served == part[["intent"]].to_numpy()  # the SKU in the photo, where served
            sibling = world.same("model_id", served, part[["intent"]].to_numpy()) & ~shown
            rows.append(part.assign(arm=name, exposures=served.shape[1], clicks=clicks.sum(1),
                                    orders=orders.sum(1), found=shown.any(1),
                                    clicks_exact=(clicks & shown).sum(1),
                                    clicks_colourway=(clicks & sibling).sum(1)))
    return ABTest(pd.concat(rows, ignore_index=True), ab.design, ab.resamples)
