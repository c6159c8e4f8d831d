"""The multi-stage cascade (MCA) baseline (notebook 03): recall → pre-rank → rank.

- **Feature extraction**: the aligned embedding of notebook 01.
- **Recall**: faiss top-N SKUs by visual similarity (a SKU scores its best catalogue view, or — with
  ``vectors="fused"`` — its fused multi-view vector, the same catalogue + training-photo vectors
  OneVision's output prior reads, so both systems can be compared on equal information); exact
  (``IndexFlatIP``) or approximate (IVF, HNSW) search — by default exact up to ``exact_max``
  vectors and IVF above (a shop-sized catalogue, notebook 07).
- **Pre-rank**: logistic regression on cheap features (visual score and rank, product-type vote of
  the recalled list, popularity) → top-M.
- **Rank**: gradient-boosted trees (scikit-learn) on rich features — the cheap ones plus the
  user's history affinity to the candidate's type, colour, creator, model and price — trained on
  the logged exposures with clicks as labels and orders weighted higher.

Each stage has its own objective, as in production cascades; the stage losses in notebook 03 show
where the target falls out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import metrics, timing
from .config import with_overrides
from .fusion import catalogue_only_vectors
from .fusion import item_vectors as fused_item_vectors
from .recall import VisualRecall

CHEAP = ["visual", "visual_rank", "type_vote", "model_vote", "popularity"]
RICH = CHEAP + ["hist_type", "hist_colour", "hist_creator", "hist_model", "hist_price_gap", "hist_len",
                "hist_sim", "log_price"]


@dataclass(frozen=True)
class MCAConfig:
    """Cascade settings (kit choices)."""

    recall: int = 200  # N candidates from visual recall
    prerank: int = 50  # M candidates kept by the pre-ranker
    index: str = "auto"  # flat (exact), ivf or hnsw (approximate); auto: flat up to exact_max, else ivf
    exact_max: int = 50_000  # the largest index "auto" searches exactly
    ivf_probe: int = 32  # IVF lists probed per query (of √n)
    vectors: str = "catalogue"  # recall index: catalogue views, or "fused" SKU vectors (+ training photos)
    order_weight: float = 3.0  # sample weight of an ordered exposure (clicks weigh 1)
    trees: int = 200  # boosting iterations of the ranker
    depth: int = 3  # depth of each tree (shallow: ~1,000 clicks to learn from)
    sibling_expand: int = 10  # add the other colourways of the best k visual matches to recall (0: off)
    rank_on: str = "exposures"  # ranker training rows: logged exposures, or every recalled "candidates"
    user_features: bool = True  # the ranker reads the shopper's history features (hist_*); False: an ablation
    seed: int = 0

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> MCAConfig:
        cfg = with_overrides(cls, overrides, "MCA")
        if cfg.index not in ("auto", "flat", "ivf", "hnsw"):
            raise ValueError(f"MCA index must be 'auto', 'flat', 'ivf' or 'hnsw', got {cfg.index!r}")
        if cfg.vectors not in ("catalogue", "fused"):
            raise ValueError(f"MCA vectors must be 'catalogue' or 'fused', got {cfg.vectors!r}")
        if cfg.rank_on not in ("candidates", "exposures"):
            raise ValueError(f"MCA rank_on must be 'candidates' or 'exposures', got {cfg.rank_on!r}")
        if not 10 <= cfg.prerank <= cfg.recall:
            raise ValueError(f"MCA needs 10 <= prerank <= recall, got prerank={cfg.prerank}, "
                             f"recall={cfg.recall}")
        return cfg


def features(items: pd.DataFrame, candidates, scores, popularity: np.ndarray) -> pd.DataFrame:
    """Cheap (pre-rank) features of every (query, candidate): (Q·N) rows in query-major order."""
    q, n = candidates.shape
    type_ = items["fine_type"].astype(str).to_numpy()
    model = items["model_id"].to_numpy()
    top = candidates[:, : min(10, n)]  # what the best visual matches say about type and shape
    type_vote = (type_[top][:, None, :] == type_[candidates][:, :, None]).mean(2)
    model_vote = (model[top][:, None, :] == model[candidates][:, :, None]).mean(2)
    # relative to the list's best score: training photos score higher than new ones (the head saw them)
    return pd.DataFrame({"visual": (scores - scores[:, :1]).ravel(),
                         "visual_rank": np.log1p(np.tile(np.arange(n), q)),
                         "type_vote": type_vote.ravel(), "model_vote": model_vote.ravel(),
                         "popularity": popularity[candidates.ravel()]})


def history_features(items: pd.DataFrame, candidates, histories: list,
                     item_vectors: np.ndarray) -> pd.DataFrame:
    """The ranker's extra features: each candidate against the user's history, (Q·N) rows.

    ``item_vectors`` (n_items, d): catalogue-image embeddings, for the candidate's likeness to the
    SKUs in the user's history (``hist_sim``).
    """
    q, n = candidates.shape
    type_ = items["fine_type"].astype(str).to_numpy()
    colour = items["colour"].astype(str).to_numpy()
    creator = items["creator"].astype(str).to_numpy()
    model = items["model_id"].to_numpy()
    log_price = np.log(items["price"].to_numpy(float))
    rows = {k: np.zeros(q * n) for k in RICH[len(CHEAP):]}
    rows["log_price"] = log_price[candidates.ravel()]
    for i, hist in enumerate(histories):
        s = slice(i * n, (i + 1) * n)
        c = candidates[i]
        rows["hist_len"][s] = np.log1p(len(hist))
        if not hist:
            continue
        h = np.asarray(hist)
        rows["hist_type"][s] = (type_[c][:, None] == type_[h][None, :]).mean(1)
        rows["hist_colour"][s] = (colour[c][:, None] == colour[h][None, :]).mean(1)
        rows["hist_creator"][s] = (creator[c][:, None] == creator[h][None, :]).mean(1)
        rows["hist_model"][s] = (model[c][:, None] == model[h][None, :]).mean(1)
        rows["hist_price_gap"][s] = np.abs(log_price[c] - log_price[h].mean())
        rows["hist_sim"][s] = (item_vectors[c] @ item_vectors[h].T).mean(1)
    return pd.DataFrame(rows)


class Cascade:
    """Recall → pre-rank → rank, fitted on logged exposures."""

    def __init__(self, catalogue, view_embeddings: np.ndarray, cfg: MCAConfig,
                 fused_vectors: np.ndarray | None = None):
        """``fused_vectors`` (n_items, d): the SKU vectors of ``vectors="fused"`` (default: VRQ's
        fusion, ``fusion.item_vectors``; pass ``ids.item_vectors`` to index exactly OneVision's)."""
        if cfg.recall > len(catalogue.items):
            raise ValueError(f"asked for {cfg.recall} recall candidates but the catalogue has "
                             f"{len(catalogue.items)} SKUs: lower MCA recall")
        self.cat, self.emb, self.cfg = catalogue, view_embeddings, cfg
        if cfg.vectors == "fused":
            self.item_vectors = fused_item_vectors(catalogue, view_embeddings) if fused_vectors is None \
                else np.asarray(fused_vectors, np.float32)
            self.recall = VisualRecall(catalogue, view_embeddings, cfg.index, self.item_vectors,
                                       cfg.exact_max, cfg.ivf_probe)
        else:
            self.item_vectors = catalogue_only_vectors(catalogue, view_embeddings)
            self.recall = VisualRecall(catalogue, view_embeddings, cfg.index, exact_max=cfg.exact_max,
                                       probe=cfg.ivf_probe)
        self.clicks = self.exposures = np.zeros(len(catalogue.items))
        self.model_of = catalogue.items["model_id"].to_numpy()
        self.skus_of_model = catalogue.items.groupby("model_id")["item_id"].apply(np.asarray).to_dict()
        self.prerank_model = self.rank_model = None
        self.rank_features = [f for f in RICH if cfg.user_features or not f.startswith("hist_")]

    def fit(self, log: pd.DataFrame, histories: dict) -> Cascade:
        """Train both rankers on the training log (clicked = label, orders weighted higher)."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        n = len(self.cat.items)
        if log["item_id"].max() >= n or log["item_id"].min() < 0:
            raise ValueError("the log references SKUs outside the catalogue")
        known = [i for h in histories.values() for i in h]
        if known and (max(known) >= n or min(known) < 0):
            raise ValueError("a user history references SKUs outside the catalogue")
        if missing := set(log["session"]) - set(histories):
            raise ValueError(f"{len(missing)} logged sessions have no history entry (e.g. session "
                             f"{min(missing)}): build histories with sim.session_histories(sessions, log)")
        self.clicks = np.bincount(log.loc[log["clicked"], "item_id"], minlength=n).astype(float)
        self.exposures = np.bincount(log["item_id"], minlength=n).astype(float)
        sessions = log.drop_duplicates("session")[["session", "user", "view_id"]]
        cand, scores = self.retrieve(sessions["view_id"].to_numpy())
        hists = [histories[s] for s in sessions["session"]]
        feats = pd.concat([features(self.cat.items, cand, scores, self.popularity()),
                           history_features(self.cat.items, cand, hists, self.item_vectors)], axis=1)
        feats["session"] = np.repeat(sessions["session"].to_numpy(), cand.shape[1])
        feats["item_id"] = cand.ravel()
        every = feats.merge(log[["session", "item_id", "clicked", "ordered"]].assign(exposed=True),
                            on=["session", "item_id"], how="left")
        every = every.fillna({"clicked": False, "ordered": False, "exposed": False}).infer_objects()
        # leave one out: a row's own exposure and click must not count towards its popularity (a label leak)
        every["popularity"] = self.popularity(every["item_id"], every["clicked"], every["exposed"])
        every["weight"] = 1 + self.cfg.order_weight * every["ordered"].astype(float)
        data = every[every["exposed"]]  # exposures that recall also finds
        if data["clicked"].nunique() < 2:
            raise ValueError("the training log needs both clicked and unclicked exposures to fit the rankers")
        # The pre-ranker sees every recalled candidate (unexposed ones are negatives), as it must choose
        # among all of them; the ranker learns from exposures, where a non-click means something.
        # (With a logging policy that explored only the visual top-20, exposure training extrapolated
        # badly past it: the policy's pool must cover what the ranker will be asked to order.)
        self.prerank_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        self.prerank_model.fit(every[CHEAP], every["clicked"].astype(bool),
                               logisticregression__sample_weight=every["weight"])
        self.rank_model = HistGradientBoostingClassifier(
            max_iter=self.cfg.trees, learning_rate=0.05, max_depth=self.cfg.depth, min_samples_leaf=50,
            l2_regularization=1.0, random_state=self.cfg.seed)
        train = data if self.cfg.rank_on == "exposures" else every
        self.rank_model.fit(train[self.rank_features], train["clicked"].astype(bool),
                            sample_weight=train["weight"])
        return self

    def retrieve(self, view_ids):
        """Recall: visual top-N, with the other colourways of the best ``sibling_expand`` matches
        swapped in for the tail (a second channel: the aligned embedding pushes colourways apart,
        yet a shopper may well buy the same product in another colour). Returns SKUs and scores (Q, N)."""
        queries = self.emb[np.asarray(view_ids)]
        cand, scores = self.recall.search(queries, self.cfg.recall)
        k = self.cfg.sibling_expand
        if not k:
            return cand, scores
        model, by_model = self.model_of, self.skus_of_model
        for q in range(len(cand)):
            siblings = np.concatenate([by_model[m] for m in np.unique(model[cand[q, :k]])])
            extra = np.setdiff1d(siblings, cand[q])
            if len(extra):
                extra = extra[: len(cand[q]) - k]
                keep = cand[q, : len(cand[q]) - len(extra)]
                extra_scores = self.item_vectors[extra] @ queries[q]
                merged = np.concatenate([keep, extra])
                merged_scores = np.concatenate([scores[q, : len(keep)], extra_scores])
                order = np.argsort(-merged_scores, kind="stable")
                cand[q], scores[q] = merged[order], merged_scores[order]
        return cand, scores

    def popularity(self, items=None, own_clicks=0, own_exposures=0) -> np.ndarray:
        """Smoothed click-through rate of SKUs in the training log, (clicks + 1) / (exposures + 10)."""
        items = np.arange(len(self.clicks)) if items is None else np.asarray(items)
        own_clicks, own_exposures = np.asarray(own_clicks, float), np.asarray(own_exposures, float)
        return (self.clicks[items] - own_clicks + 1) / (self.exposures[items] - own_exposures + 10)

    def rank(self, view_ids, histories: list, k: int = 10, timings: dict | None = None) -> dict:
        """Run the cascade for query views; returns each stage's list (SKU ids, best first).

        Scoring runs on one thread: for a query at a time, thread start-up costs more than it saves
        (and two OpenMP pools competing for 2 cores make p95 latency explode).
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self._rank(view_ids, histories, k, timings)

    def runner(self, view_ids, histories: list, k: int = 10):
        """``run(which)`` for :mod:`ovkit.timing`: the top-``k`` of query ``which`` alone (an index)
        or of the queries of a slice together; ``view_ids`` (Q,) and ``histories`` (Q lists)."""
        view_ids = np.asarray(view_ids)

        def run(which):
            rows = timing.rows(which)
            return self.rank(view_ids[rows], histories[rows], k)["rank"]

        return run

    def _rank(self, view_ids, histories, k, timings):
        cfg = self.cfg
        clock = time.perf_counter
        t0 = clock()
        cand, scores = self.retrieve(view_ids)
        t1 = clock()
        cheap = features(self.cat.items, cand, scores, self.popularity())
        pre = self.prerank_model.predict_proba(cheap[CHEAP])[:, 1].reshape(cand.shape)
        keep = np.argsort(-pre, axis=1, kind="stable")[:, : cfg.prerank]
        pre_items = np.take_along_axis(cand, keep, 1)
        t2 = clock()
        rows = (keep + np.arange(len(cand))[:, None] * cand.shape[1]).ravel()
        rich = pd.concat([cheap.iloc[rows].reset_index(drop=True),  # history features: survivors only
                          history_features(self.cat.items, pre_items, histories, self.item_vectors)], axis=1)
        score = self.rank_model.predict_proba(rich[self.rank_features])[:, 1].reshape(keep.shape)
        final = np.take_along_axis(pre_items, np.argsort(-score, axis=1, kind="stable")[:, :k], 1)
        t3 = clock()
        if timings is not None:
            for stage, seconds in (("recall", t1 - t0), ("prerank", t2 - t1), ("rank", t3 - t2)):
                timings.setdefault(stage, []).append(seconds * 1000)
        return {"recall": cand, "prerank": pre_items, "rank": final}


def stage_loss(stages: dict, target: np.ndarray, k: int = 10) -> dict:
    """Where the target falls out: not recalled, dropped by pre-rank, or ranked below ``k``."""
    target = np.asarray(target)[:, None]
    in_recall = (stages["recall"] == target).any(1)
    in_prerank = (stages["prerank"] == target).any(1)
    in_final = (stages["rank"][:, :k] == target).any(1)
    return {"recall": float((~in_recall).mean()), "prerank": float((in_recall & ~in_prerank).mean()),
            "rank": float((in_prerank & ~in_final).mean()), "kept": float(in_final.mean())}


def latency(cascade: Cascade, view_ids, histories: list, repeats: int = 1) -> pd.DataFrame:
    """Per-query latency (ms) of each stage at batch size 1: p50 and p95 over the queries."""
    timings: dict = {}
    for _ in range(repeats):
        for v, h in zip(view_ids, histories, strict=True):
            cascade.rank([v], [h], timings=timings)
    frame = pd.DataFrame(timings)
    frame["total"] = frame.sum(1)
    return frame.quantile([0.5, 0.95]).T.rename(columns={0.5: "p50", 0.95: "p95"})


def offline_eval(cascade: Cascade, logs, k: int = 10, split: str = "test"):
    """Visual-only retrieval vs the full cascade on the sessions of ``split`` (see ``Logs.sessions``).

    Returns (table of HR@1/5/10, MRR@10, NDCG@10 against the ordered SKU, exact-SKU recall@10 and
    HR@10 against the clicked SKU; the cascade's stage lists — "recall", "prerank", "rank" — and
    visual-only's list, "visual_only"; the stage losses).
    """
    test, hists = logs.sessions(split)
    views = test["view_id"].to_numpy()
    stages = cascade.rank(views, [hists[s] for s in test["session"]], k)
    visual, _ = cascade.recall.search(cascade.emb[views], k)
    rows = {}
    for name, ranked in (("visual_only", visual), ("mca", stages["rank"])):
        row = metrics.ranking_report(ranked, test["ordered"].to_numpy())
        row["recall_exact@10"] = metrics.hit_rate(ranked, test["intent"].to_numpy(), 10)
        row["hr@10_clicked"] = metrics.hit_rate(ranked, test["clicked"].to_numpy(), 10)
        rows[name] = row
    losses = stage_loss(stages, test["ordered"].to_numpy(), k)
    stages["visual_only"] = visual  # for paired intervals: both systems' lists, session by session
    return pd.DataFrame(rows).T, stages, losses
