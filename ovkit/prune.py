"""Dynamic pruning of OneVision's inference (notebook 05).

The paper reports +21% inference efficiency from "dynamic pruning" at on-par quality but does not
say what is pruned. The kit implements the two natural candidates as **kit choices** and lets the
measurements choose:

- **Visual-token pruning**: each visual token is scored by the attention the global token pays it
  (softmax over the tokens of ⟨token, global⟩/√D in the alignment head's feature space). *Static*:
  keep the top ``keep_ratio`` of them. *Dynamic*: keep the fewest tokens whose scores add up to
  ``token_mass``, so a photo whose attention is concentrated keeps fewer.
- **Dynamic beam pruning**: after each SID level, drop the beams whose log-probability trails the
  best by more than ``delta``; once the best beam holds ``tau`` of the probability, carry only
  ``min_beams`` on. Never fewer than ``min_beams`` beams (so k results still come back).

Every decision is taken per query, on that query's tokens and beams alone: a query gets the same
top-k alone or in any batch, so quality measured in big batches and latency measured one query at
a time describe the same search. :func:`sweep` compares policies on the validation split;
:func:`measure` then measures the chosen one once on the test split.

A :class:`Policy` with the defaults prunes nothing and reproduces :func:`ovkit.gen.beam_search`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import config, gen, timing
from .results import interval_keys


@dataclass(frozen=True)
class Policy:
    """One pruning setting; the defaults prune nothing."""

    keep_ratio: float = 1.0  # static: share of visual tokens kept (best-scored first)
    token_mass: float = 1.0  # dynamic: keep the fewest tokens holding this share of the attention
    delta: float = math.inf  # drop beams whose log-probability trails their query's best by more than this
    tau: float = 1.0  # once a query's best beam's probability reaches tau, it keeps only min_beams
    min_beams: int = 10  # never fewer live beams (k results still come back)

    def __post_init__(self):
        if not 0 < self.keep_ratio <= 1 or not 0 < self.token_mass <= 1:
            raise ValueError(f"keep_ratio and token_mass must be in (0, 1], got {self.keep_ratio}, "
                             f"{self.token_mass}")
        if self.delta <= 0 or not 0 < self.tau <= 1 or self.min_beams < 1:
            raise ValueError(f"need delta > 0, 0 < tau <= 1, min_beams >= 1; got {self}")

    @property
    def name(self) -> str:
        parts = [f"keep {self.keep_ratio:g}" if self.keep_ratio < 1 else "",
                 f"mass {self.token_mass:g}" if self.token_mass < 1 else "",
                 f"δ {self.delta:g}" if math.isfinite(self.delta) else "",
                 f"τ {self.tau:g}" if self.tau < 1 else ""]
        return ", ".join(p for p in parts if p) or "unpruned"


def token_scores(q: gen.Queries) -> np.ndarray:
    """Attention (B, K) of each query's global embedding over its visual tokens (rows sum to 1)."""
    g, v = np.asarray(q.global_, np.float64), np.asarray(q.visual, np.float64)
    logits = np.einsum("bkd,bd->bk", v, g) / math.sqrt(g.shape[1])
    logits -= logits.max(1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(1, keepdims=True)


def visual_keep(q: gen.Queries, policy: Policy) -> np.ndarray | None:
    """Which visual tokens (B, K) each query keeps under ``policy`` (None: all of them)."""
    if policy.keep_ratio >= 1 and policy.token_mass >= 1:
        return None
    scores = token_scores(q)
    b, k = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, 1)
    n_static = max(1, math.ceil(policy.keep_ratio * k))
    # dynamic: the fewest best tokens whose attention reaches token_mass
    n_dynamic = np.minimum((np.cumsum(ranked, 1) < policy.token_mass - 1e-9).sum(1) + 1, k)
    n_keep = np.minimum(n_static, n_dynamic)
    keep = np.zeros((b, k), bool)
    np.put_along_axis(keep, order, np.arange(k)[None, :] < n_keep[:, None], 1)
    return keep


def beam_width(policy: Policy):
    """The ``width`` hook of :func:`ovkit.gen.beam_search` (None: no beam pruning).

    Each query is pruned on its own beams only, so its results do not depend on its batch.

    Args:
        policy: its ``delta``, ``tau`` and ``min_beams`` are used.
    Returns:
        ``width(level, score (b, n) sorted best first) -> LongTensor (b,)``, the beams each query
        carries on, or None.
    """
    if not math.isfinite(policy.delta) and policy.tau >= 1:
        return None

    def width(level, score: torch.Tensor) -> torch.Tensor:
        n = torch.full(score.shape[:1], score.shape[1], dtype=torch.long, device=score.device)
        if policy.tau < 1:  # this query's best beam is already confident enough
            n = torch.where(score[:, 0].exp() >= policy.tau, policy.min_beams, n)
        if math.isfinite(policy.delta):
            n = torch.minimum(n, (score >= score[:, :1] - policy.delta).sum(1))
        return n.clamp(min=policy.min_beams)

    return width


def search(model: gen.OneVision, q: gen.Queries, policy: Policy, k: int = 10, stats: dict | None = None, *,
           beam: int):
    """Beam search of width ``beam`` under a pruning policy; returns (items (B, k), log-probabilities
    (B, k))."""
    if policy.min_beams < k:
        raise ValueError(f"min_beams {policy.min_beams} < k={k}: pruning could leave fewer than k SKUs")
    return gen.beam_search(model, q, k, beam=beam, visual_keep=visual_keep(q, policy),
                           width=beam_width(policy), stats=stats)


def _labels(policies) -> list[str]:
    """Unique names of the policies (a repeated policy, e.g. a second baseline, gets ' #2')."""
    labels = []
    for policy in policies:
        name, i = policy.name, 2
        while name in labels:
            name, i = f"{policy.name} #{i}", i + 1
        labels.append(name)
    return labels


def _quality(model, q, logs, policy: Policy, k: int, split: str, beam: int):
    """Items (B, k), the split's metrics and the work per query of one policy on all queries.

    The counts come from one batched search; they are per query, the same as at batch 1.
    """
    counts = {}
    items, _ = search(model, q, policy, k, counts, beam=beam)
    quality = gen.evaluate(items, logs, split)
    work = {name: counts[name] / len(q) for name in ("encoder_tokens", "decoder_rows")}
    return items, quality, work


def runner(model: gen.OneVision, q: gen.Queries, policy: Policy, k: int = 10, *, beam: int):
    """``run(which)`` for :mod:`ovkit.timing`: search query ``which`` alone (an index) or the queries
    of a slice together, under ``policy``."""
    return lambda which: search(model, q.take(timing.rows(which)), policy, k, beam=beam)


SPEEDUP = interval_keys("speedup")  # median per-query ratio: speedup, speedup_ci_low, speedup_ci_high
TOTAL = interval_keys("speedup_total")  # total-time ratio (throughput), with its interval


def _latency(systems: dict, n_queries: int, timed: int | None, repeats: int,
             threads: int = 1) -> pd.DataFrame:
    """Milliseconds per query (timed, systems) at batch 1 on ``threads`` threads, every ``run(i)`` of
    ``systems`` (policies' runners, the cascade's) interleaved in one loop."""
    n = n_queries if timed is None else min(timed, n_queries)
    with config.threads(threads):
        return timing.interleaved(systems, n, repeats)


def _speedups(times: pd.DataFrame, base: str) -> pd.DataFrame:
    """SPEEDUP and TOTAL columns (ratios with intervals) of every column of ``times`` against ``base``."""
    rows = []
    for label in times.columns:
        ratios = timing.speedups(times, base, label)
        rows.append([*ratios["median"], *ratios["total"]])
    return pd.DataFrame(rows, columns=[*SPEEDUP, *TOTAL])


def sweep(model: gen.OneVision, q: gen.Queries, logs, policies, split: str = "val", k: int = 10,
          timed: int | None = None, repeats: int = 3, batch: int = 64, *,
          beam: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Quality and cost of every policy on one split (validation: choose there, test once later).

    Args:
        model: the generative model.
        q: the split's sessions as queries (``gen.session_queries(..., split=split)``).
        logs: the simulated logs (the split's ordered SKUs).
        policies: the first is the baseline (normally ``Policy()``).
        split: "val" or "test".
        k: results per query.
        beam: the unpruned search's beam width (the run's ``GEN`` beam; policies prune within it).
        timed: latency at batch 1 over the first ``timed`` queries (None: all).
        repeats: timings per query and policy (median), and passes of the batched timing.
        batch: batch size of the batched timing (over the first 2 × ``batch`` queries).
    Returns:
        (frame, times). frame, one row per policy: policy, split, hr@10, mrr@10, valid (all
        queries); latency_ms (p50 at batch 1, all policies timed in one interleaved loop on one
        thread); speedup_total (total-time ratio of the first policy to this one) and speedup
        (median per-query ratio), each with _ci_low/_ci_high (95% bootstrap over queries and timing
        rounds); batch{batch}_ms per query;
        encoder_tokens and decoder_rows per query; hr10_rel_loss against the first row.
        times: (timed, policies) milliseconds per query, columns the policy names (a repeated
        name gets ' #2').
    """
    policies = list(policies)
    labels = _labels(policies)
    rows = []
    for policy in policies:
        _, quality, work = _quality(model, q, logs, policy, k, split, beam)
        rows.append({"policy": policy.name, "split": split, "hr@10": quality["hr@10"],
                     "mrr@10": quality["mrr@10"], "valid": quality["valid"], **work})
    frame = pd.DataFrame(rows)
    systems = {label: runner(model, q, policy, k, beam=beam)
               for label, policy in zip(labels, policies, strict=True)}
    times = _latency(systems, len(q), timed, repeats)
    frame["latency_ms"] = times.median().to_numpy()
    frame[[*SPEEDUP, *TOTAL]] = _speedups(times, labels[0]).to_numpy()
    n = min(len(q), 2 * batch)
    with config.threads(1):
        frame[f"batch{batch}_ms"] = timing.batched(systems, n, batch, repeats).to_numpy()
    base = frame.iloc[0]
    frame["hr10_rel_loss"] = (base["hr@10"] - frame["hr@10"]) / base["hr@10"]
    return frame, times


def best(frame: pd.DataFrame, max_loss: float = 0.01) -> pd.Series:
    """The fastest policy whose relative HR@10 loss is at most ``max_loss``, ties broken by work.

    Fastest by the total-time ratio (throughput, the paper's "efficiency"; the median per-query
    ratio where a frame has no total). Policies whose speed-up interval overlaps the fastest one's
    are tied: timing cannot tell them apart, and picking among them by the measured value would let
    the machine's noise choose (two runs of one machine chose differently). Among the tied, the
    smallest loss wins, then the least decoder work (rows), then the fewest encoder tokens, then the
    grid order — all deterministic, so a re-run chooses the same policy. (Kit choice; without
    interval columns the speed-up alone decides.)
    """
    ok = frame[frame["hr10_rel_loss"] <= max_loss + 1e-12]
    keys = TOTAL if TOTAL[0] in ok.columns else SPEEDUP
    top = ok.loc[ok[keys[0]].idxmax()]
    _, low, high = keys
    if {low, high} <= set(ok.columns):
        ok = ok[ok[high] >= top[low]]
    else:
        ok = ok.loc[[top.name]]
    order = [c for c in ("hr10_rel_loss", "decoder_rows", "encoder_tokens") if c in ok.columns]
    return ok.sort_values(order, kind="stable").iloc[0]


def measure(model: gen.OneVision, q: gen.Queries, logs, chosen: Policy, k: int = 10, timed: int | None = None,
            repeats: int = 3, split: str = "test", others: dict | None = None,
            threads: int = 1, *, beam: int) -> tuple[dict, pd.DataFrame]:
    """The once-only test measurement of the policy chosen on validation, against the unpruned search.

    Args:
        model: the generative model.
        q: the split's sessions as queries.
        logs: the simulated logs.
        chosen: the policy (e.g. ``best(val_frame)``'s).
        k: results per query.
        beam: the unpruned search's beam width (the run's ``GEN`` beam; policies prune within it).
        timed: latency at batch 1 over the first ``timed`` queries (None: all).
        repeats: timing rounds (each query once per system per round; the median counts).
        split: normally "test".
        others: more systems timed in the same loop, name → ``run(i)`` for query i (e.g. the cascade).
        threads: torch and BLAS/OpenMP threads while timing (:func:`ovkit.config.threads`).
    Returns:
        (summary, times): the summary dict below and the milliseconds per timed query (columns
        "unpruned", "pruned" and ``others``).
        Summary:
        policy, split, queries, timed; hr@10 / mrr@10 / decoder_rows / encoder_tokens of both
        (``_unpruned``, ``_pruned``); hr10_rel_loss; speedup_total (total-time ratio) and speedup
        (median per-query ratio), each with _ci_low/_ci_high (95% bootstrap over queries and timing
        rounds); latency_ms_unpruned/_pruned (p50 at batch 1); topk_changed,
        the share of queries whose top-k differs from the unpruned one.
    """
    out = {"policy": chosen.name, "split": split, "queries": len(q)}
    items, policies = {}, {"unpruned": Policy(), "pruned": chosen}
    for label, policy in policies.items():
        items[label], quality, work = _quality(model, q, logs, policy, k, split, beam)
        out |= {f"hr@10_{label}": quality["hr@10"], f"mrr@10_{label}": quality["mrr@10"],
                **{f"{name}_{label}": value for name, value in work.items()}}
    base = out["hr@10_unpruned"]
    out["hr10_rel_loss"] = (base - out["hr@10_pruned"]) / base if base > 0 else math.nan
    out["topk_changed"] = float((items["unpruned"] != items["pruned"]).any(1).mean())
    systems = {label: runner(model, q, policy, k, beam=beam) for label, policy in policies.items()}
    times = _latency(systems | (others or {}), len(q), timed, repeats, threads)
    out["timed"] = len(times)
    ratios = timing.speedups(times, "unpruned", "pruned")
    out |= dict(zip(SPEEDUP, ratios["median"], strict=True)) | dict(zip(TOTAL, ratios["total"], strict=True))
    out |= {f"latency_ms_{label}": float(times[label].median()) for label in times.columns}
    return out, times


def settings(policy: Policy) -> dict:
    """The fields of ``policy`` that differ from the defaults (JSON-able; ``Policy(**settings)``)."""
    default = Policy()
    return {f: getattr(policy, f) for f in ("keep_ratio", "token_mass", "delta", "tau", "min_beams")
            if getattr(policy, f) != getattr(default, f)}
