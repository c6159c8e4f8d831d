"""Multi-view alignment (notebook 01): a head on backbone feature maps, trained so that a shopper's
photo and the catalogue images of the same product land close together.

OneVision trains its image encoder on curated query–item and item–item pairs with
``L_align = λ1·L_contrastive + λ2·L_circle``. Here the backbone trunk is frozen (its maps are
cached, see ``ovkit.backbone``) and an attention-pooling head learns (a) an L2-normalised global
embedding and (b) K visual tokens for the generative model of notebook 04.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import augment, backbone, config, metrics, store
from .config import with_overrides
from .data.render import FACTORS
from .recall import l2_normalise, rank_items

STAGE_VERSION = 6  # bump when the build code changes what it writes (CONTRIBUTING.md); 6: subnormals flushed


@dataclass(frozen=True)
class AlignConfig:
    """Head and training settings (kit choices where the paper is silent)."""

    dim: int = 256  # embedding and token width
    n_tokens: int = 4  # visual tokens handed to the generative model
    heads: int = 4  # attention-pooling heads
    hidden: int = 0  # width of an MLP projecting each map position (0: a single linear layer)
    feature_dropout: float = 0.5  # dropout on the cached feature maps while training (regulariser)
    lambda_contrastive: float = 1.0  # λ1: NT-Xent / InfoNCE weight
    lambda_circle: float = 0.1  # λ2: CircleLoss weight
    temperature: float = 0.07  # NT-Xent temperature
    circle_m: float = 0.25  # CircleLoss relaxation margin
    circle_gamma: float = 64.0  # CircleLoss scale
    steps: int = 1000  # optimiser steps
    batch_models: int = 32  # 3D models per batch; all their warm colourways come along
    query_item_share: float = 0.75  # share of query–item pairs (the rest are item–item)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 50  # validation Recall@1 every so many steps (keeps the best head)
    tune_blocks: int = 0  # last backbone block stages trained with the head (a GPU option)
    # WiSE-FT (Wortsman et al. 2022): the tuned blocks' weights mixed back toward the pretrained ones,
    # (1 - α)·pretrained + α·tuned, for each α here; the α with the best validation score (the notebook
    # 01 rule: mean Recall@1 on val and held-out val photos) is kept. (): the blocks as trained.
    wise_alphas: tuple[float, ...] = ()
    # Robustness options (notebook 01 §5 compares them on validation; off by default because the
    # validation rule — mean Recall@1 on val and held-out-val photos — did not pick them there)
    augment: tuple[str, ...] = ()  # any of photometric, geometric, background (see ovkit.augment)
    augment_copies: int = 1  # augmented versions cached per training photo / catalogue image
    augment_prob: float = 0.5  # chance that a query–item pair's photo is an augmented one
    select_on: str = "val"  # checkpoint choice: val photos, heldout (held-out validation families) or both
    seed: int = 0

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> AlignConfig:
        return with_overrides(cls, overrides, "ALIGN")

    def validate(self) -> None:
        if self.wise_alphas and not self.tune_blocks:
            raise ValueError("ALIGN wise_alphas mixes tuned backbone blocks with pretrained ones: "
                             "set tune_blocks too (e.g. {'tune_blocks': 1, 'wise_alphas': [0.5, 1.0]})")
        if any(not 0.0 <= a <= 1.0 for a in self.wise_alphas):
            raise ValueError(f"ALIGN wise_alphas must lie in [0, 1], got {list(self.wise_alphas)}")


# Settings added after heads were cached: keyed only when set away from their default, so heads built
# before they existed (which used that default) stay valid.
KEYED_WHEN_SET = {"wise_alphas": ()}


def stage_params(cfg: AlignConfig) -> dict:
    """``cfg`` as a cache key: every field but those of :data:`KEYED_WHEN_SET` left at their default."""
    return {name: value for name, value in dataclasses.asdict(cfg).items()
            if name not in KEYED_WHEN_SET or tuple(value) != KEYED_WHEN_SET[name]}


# --------------------------------------------------------------------------- model


class BitDropout(nn.Module):
    """Inverted dropout whose mask is cut from random 64-bit words, 16 bits per element.

    Why not ``nn.Dropout``: on the CPU it draws one Bernoulli sample per element, ~70 ms for a
    default batch of 3,200 map positions × 1,280 channels, a quarter of a training step; four
    16-bit slices of each random word give the same distribution (the drop probability rounded to
    a multiple of 1/65,536) in ~5 ms. Seeded by torch's global generator, like ``nn.Dropout``.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = -(2**15) + round(p * 2**16)  # int16 bits below it are dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * (keep * (1.0 / (1.0 - self.p)))


class AlignHead(nn.Module):
    """Attention pooling over spatial tokens → global embedding (dim) + K visual tokens (K, dim).

    Learned queries attend over the projected feature-map positions; query 0 gives the global
    embedding (plus a mean-pooled shortcut that makes early training stable), queries 1..K the
    visual tokens.
    """

    def __init__(self, in_channels: int, n_positions: int, dim: int = 256, n_tokens: int = 4,
                 heads: int = 4, hidden: int = 0, dropout: float = 0.0, tuned: nn.Module | None = None):
        super().__init__()
        self.tuned = tuned or nn.Identity()
        self.dropout = BitDropout(dropout)
        layers = [nn.Linear(in_channels, hidden), nn.GELU(), nn.Linear(hidden, dim)] if hidden else [
            nn.Linear(in_channels, dim)]
        self.proj = nn.Sequential(nn.LayerNorm(in_channels), *layers)
        self.pos = nn.Parameter(torch.zeros(n_positions, dim))
        self.queries = nn.Parameter(torch.randn(1 + n_tokens, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Linear(dim, dim)
        self.token_norm = nn.LayerNorm(dim)

    def forward(self, maps: torch.Tensor, attention: bool = False):
        """maps (B,C,h,w) → embedding (B,dim) L2-normalised, tokens (B,K,dim) [, where each visual
        token looks: attention (B,K,h,w) averaged over heads]."""
        x = self.tuned(maps.float())
        h, w = x.shape[-2:]
        x = self.proj(self.dropout(x.flatten(2).transpose(1, 2))) + self.pos  # (B, h*w, dim)
        pooled, weights = self.attn(self.queries.expand(len(x), -1, -1), x, x)  # (B, 1+K, dim)
        embedding = F.normalize(self.out(pooled[:, 0] + x.mean(1)), dim=-1)
        if attention:
            return embedding, self.token_norm(pooled[:, 1:]), weights[:, 1:].reshape(len(x), -1, h, w)
        return embedding, self.token_norm(pooled[:, 1:])


# --------------------------------------------------------------------------- losses


class AlignLoss(nn.Module):
    """L_align = λ1·NT-Xent + λ2·CircleLoss (pytorch-metric-learning), over labelled embeddings.

    Every embedding is an anchor; same-label embeddings are its positives, all others negatives.

    When every label occurs exactly twice (each anchor has one positive: :class:`PairSampler`'s
    batches), NT-Xent equals pytorch-metric-learning's ``SupConLoss`` with a plain mean — the same
    softmax over the anchor's similarities to every other embedding — computed on the B × B
    similarity matrix, where ``NTXentLoss`` builds a (positive pairs × negative pairs) one: at the
    default batch (192) 4 ms instead of 350 ms per step, forward and backward on one thread. Other
    batches use ``NTXentLoss`` itself (tests: equal losses and gradients).
    """

    def __init__(self, cfg: AlignConfig):
        super().__init__()
        from pytorch_metric_learning import losses, reducers

        self.l1, self.l2 = cfg.lambda_contrastive, cfg.lambda_circle
        self.contrastive = losses.NTXentLoss(temperature=cfg.temperature)
        self.paired = losses.SupConLoss(temperature=cfg.temperature, reducer=reducers.MeanReducer())
        self.circle = losses.CircleLoss(m=cfg.circle_m, gamma=cfg.circle_gamma)

    def nt_xent(self, embeddings, labels):
        """NT-Xent of labelled embeddings (the paired fast path when every label occurs twice)."""
        if bool((torch.unique(labels, return_counts=True)[1] == 2).all()):
            return self.paired(embeddings, labels)
        return self.contrastive(embeddings, labels)

    def forward(self, embeddings, labels):
        total = embeddings.new_zeros(())
        parts = {}
        if self.l1:
            parts["contrastive"] = self.nt_xent(embeddings, labels)
            total = total + self.l1 * parts["contrastive"]
        if self.l2:
            parts["circle"] = self.circle(embeddings, labels)
            total = total + self.l2 * parts["circle"]
        return total, {k: float(v.detach()) for k, v in parts.items()}


# --------------------------------------------------------------------------- pairs


class PairSampler:
    """Batches of (anchor, positive) view pairs with hard negatives built in.

    A batch takes ``batch_models`` 3D models and every warm colourway of each, so siblings that
    differ only in colour (the hardest negatives) meet in the same batch; models are drawn
    category-mixed at random, so same-category negatives come too. For each SKU: a query–item pair
    (a training query view ↔ one of its catalogue views) with probability ``query_item_share``,
    otherwise an item–item pair (two different views of the SKU).
    """

    def __init__(self, catalogue, cfg: AlignConfig, augmented: pd.DataFrame | None = None, offset: int = 0):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        views = catalogue.views
        # augmented photos of each SKU (rows of ovkit.augment's table, whose index is the row in its
        # maps), numbered after the catalogue's views
        self.augmented = {} if augmented is None else (
            augmented.assign(row=augmented.index.to_numpy() + offset).groupby("item_id")["row"]
            .apply(np.asarray).to_dict())
        train = views[(views["kind"] == "query") & (views["split"] == "train")]
        catalog = views[views["kind"] == "catalog"]
        self.queries = train.groupby("item_id")["view_id"].apply(np.asarray).to_dict()
        self.catalog = catalog.groupby("item_id")["view_id"].apply(np.asarray).to_dict()
        warm = catalogue.items[~catalogue.items["cold"] & catalogue.items["item_id"].isin(self.queries)]
        if warm.empty:
            raise ValueError("no SKU has training query views: the train split is empty")
        self.by_model = warm.groupby("model_id")["item_id"].apply(np.asarray).to_dict()
        self.models = np.array(sorted(self.by_model))

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns view ids (2B,) and SKU labels (2B,): anchors then positives."""
        n = min(self.cfg.batch_models, len(self.models))
        models = self.rng.choice(self.models, n, replace=False)
        items = np.concatenate([self.by_model[m] for m in models])
        anchors, positives = [], []
        for item in items:
            queries, catalog = self.queries[item], self.catalog[item]
            if self.rng.random() < self.cfg.query_item_share:
                pool = queries
                if item in self.augmented and self.rng.random() < self.cfg.augment_prob:
                    pool = self.augmented[item]
                anchors.append(self.rng.choice(pool))
                positives.append(self.rng.choice(catalog))
            else:
                pool = np.concatenate([queries, catalog])
                a, b = self.rng.choice(len(pool), 2, replace=len(pool) < 2)
                anchors.append(pool[a])
                positives.append(pool[b])
        return np.array(anchors + positives), np.concatenate([items, items])


# --------------------------------------------------------------------------- training


@torch.no_grad()
def embed(head: AlignHead, maps, view_ids=None, batch_size: int = 512):
    """Embeddings (N,dim) float32 and tokens (N,K,dim) float16 of the given views (default: all)."""
    head.eval()
    device = next(head.parameters()).device
    ids = np.arange(len(maps)) if view_ids is None else np.asarray(view_ids)
    embs, toks = [], []
    for start in range(0, len(ids), batch_size):
        e, t = head(torch.from_numpy(np.asarray(maps[ids[start : start + batch_size]])).to(device))
        embs.append(e.cpu().numpy())
        toks.append(t.half().cpu().numpy())
    return np.concatenate(embs), np.concatenate(toks)


@torch.no_grad()
def token_attention(head: AlignHead, maps, view_ids) -> np.ndarray:
    """Where each visual token of the given views looks on the feature map: (N, K, h, w), rows sum to 1."""
    head.eval()
    device = next(head.parameters()).device
    x = torch.from_numpy(np.asarray(maps[np.asarray(view_ids)])).to(device)
    return head(x, attention=True)[2].cpu().numpy()


def make_head(cfg: AlignConfig, maps, tuned: nn.Module | None = None) -> AlignHead:
    """A fresh head for maps of this shape (after the ``tuned`` backbone blocks, if any)."""
    if tuned is None:
        c, h, w = maps.shape[1:]
    else:
        with torch.no_grad():
            c, h, w = tuned.eval()(torch.from_numpy(np.asarray(maps[:1], np.float32))).shape[1:]
    return AlignHead(c, h * w, cfg.dim, cfg.n_tokens, cfg.heads, cfg.hidden, cfg.feature_dropout, tuned)


def train_head(catalogue, maps, cfg: AlignConfig, device: str = "cpu", progress: bool = True,
               tuned: nn.Module | None = None, augmented=None):
    """Train an :class:`AlignHead` (and the ``tuned`` backbone blocks) on cached maps.

    ``augmented`` (an :class:`ovkit.augment.Augmented`) adds augmented photos to the anchors. Every
    ``eval_every`` steps (and at the last) Recall@1 is scored on :func:`selection_views` of
    ``cfg.select_on`` and the head's state is kept. Returns (head with the best checked state,
    history DataFrame, {step: state_dict} of every check).
    """
    # Subnormal floats (below ~1e-38) flushed to zero while training: CircleLoss at γ 64 without the
    # contrastive term drives gradients there, and the CPU's slow path for them doubled that head's
    # step time (13.5 -> 27.8 s per 100 steps); the other heads' steps are unchanged.
    torch.set_flush_denormal(True)
    try:
        return _train_head(catalogue, maps, cfg, device, progress, tuned, augmented)
    finally:
        torch.set_flush_denormal(False)


def _train_head(catalogue, maps, cfg: AlignConfig, device, progress, tuned, augmented):
    torch.manual_seed(cfg.seed)
    head = make_head(cfg, maps, tuned).to(device)
    loss_fn = AlignLoss(cfg)
    extra, table = (None, None) if augmented is None else (augmented.maps, augmented.table)
    if table is not None:  # rows this config may draw (e.g. no cut-outs without "background")
        table = table[augment.usable(table, cfg.augment)]
    sampler = PairSampler(catalogue, cfg, table, len(maps))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    selection = selection_views(catalogue, cfg.select_on)
    history, checkpoints = [], {}
    bar = config.progress(range(1, cfg.steps + 1), progress, desc="alignment", unit="step")
    for step in bar:
        head.train()
        ids, labels = sampler.batch()
        embeddings, _ = head(torch.from_numpy(gather(maps, extra, ids)).to(device))
        loss, parts = loss_fn(embeddings, torch.from_numpy(labels).to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        row = {"step": step, "loss": loss.item(), **parts}
        if selection and (step % cfg.eval_every == 0 or step == cfg.steps):
            row.update(selection_recall(catalogue, head, maps, selection))
            checkpoints[step] = {k: v.clone() for k, v in head.state_dict().items()}
            bar.set_postfix(loss=f"{row['loss']:.3f}", val_r1=f"{_score(row, selection):.3f}")
        history.append(row)
    history = pd.DataFrame(history)
    if checkpoints:
        head.load_state_dict(checkpoints[best_step(history, selection)])
    return head.eval(), history, checkpoints


def selection_recall(catalogue, head: AlignHead, maps, selection: dict) -> dict:
    """Recall@1 of the head on each photo set of ``selection`` (name → view ids), as
    ``{"<name>_recall@1": value}``; only the views the metric reads are embedded."""
    scored = np.concatenate([catalogue.catalog_views()["view_id"].to_numpy(), *selection.values()])
    emb = np.zeros((len(maps), head.out.out_features), np.float32)
    emb[scored] = embed(head, maps, scored)[0]
    # Recall@1 only: the view gap would double the cost
    return {f"{name}_recall@1": float(recall_hits(catalogue, emb, views, 1).mean())
            for name, views in selection.items()}


def _score(row, selection) -> float:
    return float(np.mean([row[f"{name}_recall@1"] for name in selection]))


def best_step(history: pd.DataFrame, selection: dict) -> int:
    """The checked step with the best mean Recall@1 over ``selection`` (the first, on a tie)."""
    checked = history.dropna(subset=[f"{name}_recall@1" for name in selection])
    scores = [_score(row, selection) for _, row in checked.iterrows()]
    return int(checked["step"].iloc[int(np.argmax(scores))])


def selection_views(catalogue, select_on: str) -> dict:
    """Photos whose Recall@1 picks the checkpoint: warm SKUs' ``val`` photos, the photos of the
    held-out validation families (``heldout``: every factor changed, and each factor alone), or
    both (their mean Recall@1 decides). A catalogue without held-out photos uses ``val`` alone."""
    if select_on not in ("val", "heldout", "both"):
        raise ValueError(f"ALIGN select_on must be 'val', 'heldout' or 'both', got {select_on!r}")
    views = {"val": catalogue.query_views("val", cold=False)["view_id"].to_numpy()}
    if catalogue.has_heldout and select_on != "val":
        views["heldout_val"] = catalogue.heldout_views("val", None, cold=False)["view_id"].to_numpy()
        if select_on == "heldout":
            del views["val"]
    return {name: ids for name, ids in views.items() if len(ids)}


def choose_on_validation(catalogue, embeddings: dict, baseline: str, tie: float = 0.005):
    """Pick among candidate embeddings (name → (n_views, d)) by the checkpoint rule of
    ``select_on="both"``: mean Recall@1 over :func:`selection_views`. A candidate replaces
    ``baseline`` only if it scores at least ``tie`` higher (closer is a tie, kept by the baseline).

    Returns:
        (chosen name, table: one row per candidate, a Recall@1 column per photo set and ``score``).
    """
    views = selection_views(catalogue, "both")
    table = pd.DataFrame({name: {f"{part} R@1": evaluate(catalogue, emb, ids)["recall@1"]
                                 for part, ids in views.items()} for name, emb in embeddings.items()}).T
    table["score"] = table.mean(axis=1)
    return _pick(table["score"], baseline, tie), table


def _pick(scores: pd.Series, baseline, tie: float):
    """The best-scoring name if it beats ``baseline``'s score by at least ``tie``, else ``baseline``."""
    best = scores.idxmax()
    return best if scores[best] >= scores[baseline] + tie else baseline


# What notebook 01 records per run, read back from a sweep of it (sweeps/robustness.yaml, trunks.yaml):
# the validation side of the rule (columns of choose_on_validation's table), then what is only reported.
VALIDATION_KEYS = {"val R@1": "01.val_recall@1.aligned", "heldout_val R@1": "01.heldout_val_recall@1.aligned",
                   "score": "01.validation_score.aligned"}
OPTION_KEYS = {**VALIDATION_KEYS, "test R@1": "01.recall@1.aligned", "test R@1 frozen": "01.recall@1.frozen",
               "train s": "01.train_seconds", "retention": "01.heldout_ratio.aligned",
               **{f"retention {factor}": f"01.heldout_ratio.{factor}.aligned" for factor in FACTORS}}


def options_from_sweep(summary: dict, tie: float = 0.005) -> pd.DataFrame:
    """Notebook 01's settings compared across a sweep of it: one row per grid cell (its settings,
    ``profile as is`` for none), the :data:`OPTION_KEYS` metrics averaged over the cell's finished seeds
    (each retention with its SKU-resampled interval as ``_ci_low`` / ``_ci_high``), and ``chosen``:
    the cell notebook 01's rule picks on validation — the best score, if it beats the first cell
    (the baseline) by at least ``tie``. Test columns are reported, never used to choose."""
    rows = []
    for label, entry in summary.get("cells", {}).items():
        runs = [summary["points"][p]["metrics"] for p in entry.get("points", [])
                if summary["points"][p].get("status") == "ok"]
        if not runs:
            continue
        setting = ", ".join(f"{k}={v}" for name, values in entry["overrides"].items()
                            for k, v in (values.items() if isinstance(values, dict) else [(name, values)]))
        row = {"setting": setting or "profile as is", "cell": label, "seeds": len(runs)}
        for column, key in OPTION_KEYS.items():
            for end in ("", "_ci_low", "_ci_high") if column.startswith("retention") else ("",):
                values = [run[key + end] for run in runs if run.get(key + end) is not None]
                row[column + end] = float(np.mean(values)) if values else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        scores = table["score"].fillna(-np.inf)
        table["chosen"] = table.index == _pick(scores, table.index[0], tie)
    return table


def heldout_recall(catalogue, embeddings: dict, family: str = "test") -> pd.DataFrame:
    """Recall@1 of each embedding (name → (n_views, d)) on warm SKUs' held-out photos of ``family``:
    row ``all`` (every factor changed at once), then one row per factor changed alone (those the
    catalogue has photos for)."""
    sets = heldout_sets(catalogue, family)
    return pd.DataFrame({name: {condition: evaluate(catalogue, emb, views)["recall@1"]
                                for condition, views in sets.items()} for name, emb in embeddings.items()})


def heldout_sets(catalogue, family: str = "test") -> dict:
    """Warm SKUs' held-out photos of ``family`` by condition: ``"all"`` (every factor changed), then
    each factor changed alone; condition → view ids, only the conditions the catalogue has photos for."""
    sets = {condition: catalogue.heldout_views(family, condition, cold=False)["view_id"].to_numpy()
            for condition in ["all", *FACTORS]}
    return {condition: views for condition, views in sets.items() if len(views)}


def heldout_retention(catalogue, embeddings: dict, indist_views, family: str = "test") -> dict:
    """Retention per held-out condition: Recall@1 on warm SKUs' held-out photos of ``family`` over
    Recall@1 on ``indist_views`` (their in-distribution photos), for ``"all"`` (every factor changed)
    and each factor changed alone.

    Returns:
        condition → :func:`ovkit.metrics.retention_ci`'s result: system → (ratio, low, high), and the
        first two systems' difference; the intervals resample SKUs.
    """
    sku = catalogue.views["item_id"].to_numpy()
    indist_views = np.asarray(indist_views)
    indist = {name: recall_hits(catalogue, emb, indist_views, 1) for name, emb in embeddings.items()}
    out = {}
    for condition, views in heldout_sets(catalogue, family).items():
        held = {name: recall_hits(catalogue, emb, views, 1) for name, emb in embeddings.items()}
        out[condition] = metrics.retention_ci(held, sku[views], indist, sku[indist_views])
    return out


def retention_table(kept: dict) -> pd.DataFrame:
    """:func:`heldout_retention`'s result as a table: a row per condition, a column per system (and
    the difference), each cell ``"ratio [low, high]"``."""
    return pd.DataFrame({condition: {name: "{:.2f} [{:.2f}, {:.2f}]".format(*interval)
                                     for name, interval in row.items()}
                         for condition, row in kept.items()}).T


def gather(maps, extra, ids: np.ndarray) -> np.ndarray:
    """Maps of ``ids``: catalogue views first, then ``extra`` rows numbered after them."""
    ids = np.asarray(ids)
    if extra is None:
        return np.asarray(maps[ids])
    out = np.empty((len(ids), *maps.shape[1:]), maps.dtype)
    own = ids < len(maps)
    out[own] = maps[ids[own]]
    out[~own] = extra[ids[~own] - len(maps)]
    return out


@dataclass
class Aligned:
    """Stage ``align``'s result: the trained head and what it computes for every view."""

    head: nn.Module  # in eval mode
    embeddings: np.ndarray  # (n_views, dim) L2-normalised global embeddings
    tokens: np.ndarray  # (n_views, K, dim) visual tokens, memory-mapped
    history: pd.DataFrame  # training curve: step, loss, validation recall
    train_seconds: float
    artifact: store.Artifact
    config: AlignConfig
    wise: pd.DataFrame | None = None  # WiSE-FT: alpha, Recall@1 per validation photo set, score, chosen


def aligned(catalogue, maps, maps_artifact, cfg: AlignConfig | None = None, device: str = "cpu") -> Aligned:
    """Stage ``align``: a trained head and the embeddings/tokens of every view (cached)."""
    cfg = config.expect(cfg, AlignConfig, "ALIGN")
    made_with = maps_artifact.meta["params"]
    if made_with["tune_blocks"] != cfg.tune_blocks:
        raise ValueError(f"these feature maps were cached for tune_blocks={made_with['tune_blocks']}, "
                         f"the config asks for {cfg.tune_blocks}: pass tune_blocks to cached_maps too")
    tuned = None
    if cfg.tune_blocks:  # the trainable blocks start from the same pretrained backbone
        model = backbone.create(made_with["backbone"], made_with["weights"])
        tuned = backbone.split(model, cfg.tune_blocks).tuned

    extra = None
    if cfg.augment and cfg.augment_copies and cfg.augment_prob:
        extra = augment.augmented(catalogue, maps_artifact, cfg.augment, cfg.augment_copies, cfg.seed, device)

    # One training serves every checkpoint rule: the rule only picks among the checked states, so
    # heads that differ in select_on alone share the steps (stage align_train) and each rule's
    # stage align scores its photo sets on the saved checkpoints.
    # (and WiSE-FT's mixing happens after training, on the chosen checkpoint)
    train_cfg = dataclasses.replace(cfg, select_on="val", wise_alphas=())
    trained = store.cached("align_train", stage_params(train_cfg),
                           lambda folder: _train(folder, catalogue, maps, train_cfg, device, tuned, extra),
                           upstream=[maps_artifact] + ([extra.artifact] if extra else []),
                           version=STAGE_VERSION)
    artifact = store.cached("align", stage_params(cfg),
                            lambda folder: _select(folder, catalogue, maps, cfg, device, tuned, trained),
                            upstream=[trained], version=STAGE_VERSION)
    head = make_head(cfg, maps, tuned)
    head.load_state_dict(torch.load(artifact / "head.pt", weights_only=True))
    return Aligned(head=head.eval(), embeddings=np.load(artifact / "embeddings.npy"),
                   tokens=np.load(artifact / "tokens.npy", mmap_mode="r"),
                   history=pd.read_csv(artifact / "history.csv"),
                   train_seconds=trained.meta["train_seconds"], artifact=artifact, config=cfg,
                   wise=pd.read_csv(artifact / "wise.csv") if cfg.wise_alphas else None)


def _train(folder, catalogue, maps, cfg: AlignConfig, device, tuned, extra) -> dict:
    """Stage align_train: the head's training (checked on val photos), every checked state saved."""
    started = time.perf_counter()
    head, history, checkpoints = train_head(catalogue, maps, cfg, device, tuned=copy.deepcopy(tuned),
                                            augmented=extra)
    seconds = time.perf_counter() - started
    if not checkpoints:  # no validation photos: the last state is the only candidate
        checkpoints = {cfg.steps: head.state_dict()}
    torch.save(checkpoints, folder / "checkpoints.pt")
    history.to_csv(folder / "history.csv", index=False)
    store.release_pages(maps, extra.maps if extra else None)  # training mapped them all
    return {"train_seconds": round(seconds, 2)}


def _select(folder, catalogue, maps, cfg: AlignConfig, device, tuned, trained: store.Artifact) -> dict:
    """Stage align: the checkpoint that ``cfg.select_on`` picks, and every view's embedding and tokens."""
    checkpoints = torch.load(trained / "checkpoints.pt", weights_only=True, map_location=device)
    history = pd.read_csv(trained / "history.csv")
    selection = selection_views(catalogue, cfg.select_on)
    head = make_head(cfg, maps, copy.deepcopy(tuned)).to(device)
    missing = [name for name in selection if f"{name}_recall@1" not in history]
    for step, state in checkpoints.items() if missing else ():
        head.load_state_dict(state)
        scores = selection_recall(catalogue, head, maps, {name: selection[name] for name in missing})
        for column, value in scores.items():
            history.loc[history["step"] == step, column] = value
    chosen = best_step(history, selection) if selection else max(checkpoints)
    head.load_state_dict(checkpoints[chosen])
    meta = {"chosen_step": chosen, "config": dataclasses.asdict(cfg)}
    if cfg.wise_alphas:
        alpha, table = choose_wise_alpha(catalogue, head, tuned, maps, cfg.wise_alphas)
        head.load_state_dict(wise_state(head.state_dict(), tuned.state_dict(), alpha))
        table.to_csv(folder / "wise.csv", index=False)
        meta["wise_alpha"] = alpha
    emb, tok = embed(head, maps)
    store.release_pages(maps)
    torch.save(head.state_dict(), folder / "head.pt")
    np.save(folder / "embeddings.npy", emb)
    np.save(folder / "tokens.npy", tok)
    history.to_csv(folder / "history.csv", index=False)
    return meta


def wise_state(tuned_state: dict, pretrained_blocks: dict, alpha: float) -> dict:
    """WiSE-FT: the head's state (``tuned_state``) with each tuned backbone block tensor
    (``tuned.<name>``) replaced by ``(1 - alpha)·pretrained + alpha·tuned`` (``pretrained_blocks``:
    the blocks' state before training). BatchNorm's running statistics mix too; integer counters
    keep the tuned value. The head's own layers stay as trained."""
    out = dict(tuned_state)
    for name, value in pretrained_blocks.items():
        key = f"tuned.{name}"
        if value.is_floating_point():
            out[key] = torch.lerp(value.to(out[key].dtype), out[key], alpha)
    return out


def choose_wise_alpha(catalogue, head: AlignHead, pretrained_blocks: nn.Module, maps, alphas):
    """The WiSE-FT mixing weight of ``alphas`` with the best validation score (mean Recall@1 over
    :func:`selection_views` ``"both"``, the notebook 01 rule; the first in ``alphas`` on a tie).
    ``head`` is left with its trained state. Returns (alpha, table: one row per alpha)."""
    trained = {k: v.clone() for k, v in head.state_dict().items()}
    pretrained, selection = pretrained_blocks.state_dict(), selection_views(catalogue, "both")
    rows = []
    for alpha in alphas:
        head.load_state_dict(wise_state(trained, pretrained, float(alpha)))
        scores = selection_recall(catalogue, head, maps, selection)
        rows.append({"alpha": float(alpha), **scores, "score": _score(scores, selection)})
    head.load_state_dict(trained)
    table = pd.DataFrame(rows)
    table["chosen"] = table.index == int(np.argmax(table["score"].to_numpy()))
    return float(table.loc[table["chosen"], "alpha"].iloc[0]), table


def photo_features(catalogue, align_run: Aligned, pixels, backbone_name: str = "tf_efficientnet_lite0",
                   weights: str = "offline", device: str = "cpu"):
    """Global embeddings (N, D) and visual tokens (N, K, D) of new query photos (N, H, W, 3) uint8,
    computed as notebook 01 computed them (frozen backbone + the alignment head)."""
    pixels = np.asarray(pixels)
    size = catalogue.pixels.shape[1]
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
        raise ValueError(f"query photos must be {size}×{size} RGB arrays (N, {size}, {size}, 3) like the "
                         f"catalogue's images, got shape {pixels.shape}: resize or crop them first")
    if pixels.dtype != np.uint8:
        raise ValueError(f"query photos must be uint8 pixels (0–255), got {pixels.dtype}")
    model = backbone.create(backbone_name, weights)
    trunk = backbone.split(model, align_run.config.tune_blocks)
    maps = backbone.feature_maps(trunk, model, pixels, device=device)
    return embed(align_run.head, maps)


# --------------------------------------------------------------------------- baselines


def pixel_embeddings(pixels, size: int = 32) -> np.ndarray:
    """Raw-pixel baseline: images shrunk to ``size``², centred per image, L2-normalised."""
    from PIL import Image

    out = np.stack([np.asarray(Image.fromarray(np.asarray(p)).resize((size, size), Image.BILINEAR),
                               np.float32).ravel() for p in pixels])
    store.release_pages(pixels)
    out -= out.mean(1, keepdims=True)
    return l2_normalise(out)


def pooled_embeddings(maps, batch_size: int = 1024) -> np.ndarray:
    """Frozen-backbone baseline: global average pooling of the feature maps, L2-normalised."""
    out = np.concatenate([np.asarray(maps[i : i + batch_size], np.float32).mean((2, 3))
                          for i in range(0, len(maps), batch_size)])
    store.release_pages(maps)
    return l2_normalise(out)


# --------------------------------------------------------------------------- evaluation


def recall_hits(catalogue, view_embeddings, query_view_ids, k: int = 1) -> np.ndarray:
    """Per query view: 1.0 if its own SKU is in the top ``k`` (for paired confidence intervals)."""
    top, _ = rank_items(catalogue, view_embeddings, query_view_ids, k)
    truth = catalogue.views["item_id"].to_numpy()[np.asarray(query_view_ids)]
    return (top == truth[:, None]).any(1).astype(float)


def evaluate(catalogue, view_embeddings, query_view_ids, ks=(1, 10)) -> dict:
    """Recall@k of the exact SKU and of the same 3D model, and the view gap, for query views."""
    query_view_ids = np.asarray(query_view_ids)
    if len(query_view_ids) == 0:
        raise ValueError("no query views to evaluate: the split is empty")
    top, _ = rank_items(catalogue, view_embeddings, query_view_ids, max(ks))
    truth = catalogue.views["item_id"].to_numpy()[query_view_ids]
    model_of = catalogue.items["model_id"].to_numpy()
    result = {f"recall@{k}": float((top[:, :k] == truth[:, None]).any(1).mean()) for k in ks}
    same_model = model_of[np.where(top >= 0, top, 0)] == model_of[truth][:, None]
    result.update({f"model_recall@{k}": float(same_model[:, :k].any(1).mean()) for k in ks})
    result.update(view_gap(catalogue, view_embeddings, query_view_ids))
    return result


def view_gap(catalogue, view_embeddings, query_view_ids) -> dict:
    """Mean cosine of a query to its own SKU's catalogue views vs to the nearest other SKU's.

    ``view_gap`` = own − nearest other: positive means a query sits closer to its product than to
    any other product's shop image.
    """
    catalog = catalogue.catalog_views()
    cat_emb = view_embeddings[catalog["view_id"].to_numpy()]
    cat_item = catalog["item_id"].to_numpy()
    q_emb = view_embeddings[np.asarray(query_view_ids)]
    truth = catalogue.views["item_id"].to_numpy()[np.asarray(query_view_ids)]
    own, other = [], []
    for start in range(0, len(q_emb), 1024):
        sims = q_emb[start : start + 1024] @ cat_emb.T
        mine = cat_item[None, :] == truth[start : start + 1024, None]
        own.append(np.where(mine, sims, -np.inf).max(1))
        other.append(np.where(mine, -np.inf, sims).max(1))
    own, other = np.concatenate(own), np.concatenate(other)
    return {"cos_own": float(own.mean()), "cos_other": float(other.mean()),
            "view_gap": float((own - other).mean())}

