"""Why OneVision trails the cascade here (notebook 04's diagnostics, issue 28).

Three questions, each answered on the test sessions with user-resampled intervals:

- **Does a system use the user?** Serve every test session with another user's history, and with
  none, and compare HR@10 with the session's own (:func:`history_contexts`, :func:`serve_contexts`).
- **Where does the cascade win?** HR@10 per *target type*: the shopper orders the photographed SKU,
  another colourway of it, or another product (:func:`target_types`, :func:`hr_by_target_type`).
- **How much is the decoder's own?** Serve with the output prior's learned scales multiplied by 0
  (the decoder alone), 0.5 or 2 (:meth:`ovkit.gen.OneVision.with_prior_factor`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import gen, metrics

TARGET_TYPES = ("photographed", "colourway", "other_product")


def target_types(catalogue, sessions: pd.DataFrame) -> np.ndarray:
    """Per session, what was ordered relative to the photo: ``photographed`` (the SKU in the
    photo), ``colourway`` (another colourway of it: the same 3D model) or ``other_product``."""
    model = catalogue.items["model_id"].to_numpy()
    ordered, intent = sessions["ordered"].to_numpy(), sessions["intent"].to_numpy()
    photographed, colourway, other = TARGET_TYPES
    sibling = np.where(model[ordered] == model[intent], colourway, other)
    return np.where(ordered == intent, photographed, sibling)


def hr_by_target_type(ranked: dict, sessions: pd.DataFrame, types: np.ndarray, k: int = 10) -> pd.DataFrame:
    """HR@k of each system (name → ranked lists (S, ≥k), in session order) per target type, with
    user-resampled 95% intervals (:func:`ovkit.metrics.slice_table`, one slice per type; none from
    a single user's sessions). One row per (system, type): ``hr@k``, ``95% low``, ``95% high``,
    ``sessions`` (how many sessions have that type)."""
    kinds = [kind for kind in TARGET_TYPES if (types == kind).any()]
    lists = {kind: {name: np.asarray(r)[types == kind] for name, r in ranked.items()} for kind in kinds}
    table = metrics.slice_table(lists, {kind: sessions[types == kind] for kind in kinds}, k)
    key = f"hr@{k}"
    rows = [(name, kind) for name in ranked for kind in kinds]  # system by system, as given
    table = table.loc[rows, [key, f"{key} low", f"{key} high", "sessions"]]
    return table.rename(columns={f"{key} low": "95% low", f"{key} high": "95% high"}).rename_axis(
        ["system", "target"])


def history_contexts(sessions: pd.DataFrame, histories: dict, seed: int = 0) -> dict:
    """Three user contexts for the sessions: each one's ``own`` history, ``another_user``'s (users
    paired at random, none with themselves; a session takes its partner's first session's history)
    and ``none`` (an empty history). Returns context → one list of SKU ids per session."""
    users = sessions["user"].to_numpy()
    unique = np.unique(users)
    if len(unique) < 2:
        raise ValueError("swapping histories needs sessions of at least two users")
    order = np.random.default_rng(seed).permutation(unique)
    partner = dict(zip(order, np.roll(order, 1), strict=True))  # a derangement: a cycle over users
    own = [list(histories[s]) for s in sessions["session"]]
    first = {}
    for user, history in zip(users, own, strict=True):
        first.setdefault(user, history)
    return {"own": own, "another_user": [first[partner[u]] for u in users], "none": [[] for _ in users]}


def serve_contexts(model, cascade, embeddings, tokens, view_ids, contexts: dict, history_len: int,
                   k: int = 10, *, beam: int) -> dict:
    """Top-``k`` lists of OneVision (``model``) and the cascade for the same photos under each
    user context of :func:`history_contexts`: ``{("onevision" | "cascade", context): (S, k)}``."""
    ranked = {}
    for context, histories in contexts.items():
        queries = gen.make_queries(embeddings, tokens, view_ids, histories, history_len)
        ranked[("onevision", context)] = gen.beam_search(model, queries, k, beam=beam)[0]
        ranked[("cascade", context)] = cascade.rank(view_ids, histories, k)["rank"]
    return ranked


def oracle_lists(world, sessions: pd.DataFrame, k: int = 10, taste: bool = True) -> np.ndarray:
    """The top-``k`` SKUs (S, k) of each session by the simulator's own order probability.

    A session's offline target is drawn ∝ relevance(intent, SKU) · appeal · price fit over the whole
    catalogue (:func:`ovkit.sim.offline_targets`), so ranking by that weight is the best any system
    can do. ``taste=True`` uses the session's user's appeal and price fit (the *taste oracle*);
    ``False`` their mean over all users (the *intent oracle*: it knows the SKU in the photo, not the
    shopper). Both read the hidden world: ceilings, never systems.
    """
    intent, users = sessions["intent"].to_numpy(), sessions["user"].to_numpy()
    everything = np.arange(len(world.items))
    weight = world.appeal * world.price_fit  # (users, items)
    lists = []
    for start in range(0, len(intent), 256):  # (256, #SKUs) at a time
        part = slice(start, start + 256)
        rel = world.relevance(intent[part], everything[None, :])
        score = rel * (weight[users[part]] if taste else weight.mean(0))
        lists.append(np.argsort(-score, axis=1, kind="stable")[:, :k])
    return np.concatenate(lists) if lists else np.zeros((0, k), np.int64)
