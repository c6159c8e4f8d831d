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

A :class:`Policy` with the defaults prunes nothing and reproduces :func:`ovkit.gen.beam_search`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import config, gen


@dataclass(frozen=True)
class Policy:
    """One pruning setting; the defaults prune nothing."""

    keep_ratio: float = 1.0  # static: share of visual tokens kept (best-scored first)
    token_mass: float = 1.0  # dynamic: keep the fewest tokens holding this share of the attention
    delta: float = math.inf  # drop beams whose log-probability trails the best by more than this
    tau: float = 1.0  # once the best beam's probability reaches tau, keep only min_beams
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
    """The ``width(level, scores)`` hook of :func:`ovkit.gen.beam_search` (None: no beam pruning)."""
    if not math.isfinite(policy.delta) and policy.tau >= 1:
        return None

    def width(level, score: torch.Tensor) -> int:  # score (b, n): sorted, best first
        n = score.shape[1]
        if policy.tau < 1 and bool((score[:, 0].exp() >= policy.tau).all()):
            n = policy.min_beams
        if math.isfinite(policy.delta):
            close = (score >= score[:, :1] - policy.delta).sum(1).max()
            n = min(n, int(close))
        return max(n, policy.min_beams)

    return width


def search(model: gen.OneVision, q: gen.Queries, policy: Policy, k: int = 10, stats: dict | None = None):
    """Beam search under a pruning policy; returns (items (B, k), log-probabilities (B, k))."""
    if policy.min_beams < k:
        raise ValueError(f"min_beams {policy.min_beams} < k={k}: pruning could leave fewer than k SKUs")
    return gen.beam_search(model, q, k, visual_keep=visual_keep(q, policy), width=beam_width(policy),
                           stats=stats)


def sweep(model: gen.OneVision, q: gen.Queries, logs, policies, k: int = 10, repeats: int = 3,
          timed: int | None = None, batch: int = 64) -> pd.DataFrame:
    """Quality and cost of every policy (the first should be the unpruned baseline).

    Quality on all queries (HR@10, MRR@10 against the ordered SKU). Cost on one thread: at batch 1
    over the first ``timed`` queries, each query run under *every* policy in turn (so a drift of the
    machine's speed hits all policies alike), the median of ``repeats`` runs, then the p50 over
    queries; per query in batches of ``batch``; and the encoder tokens and decoder rows (sequences ×
    levels) actually computed per query at batch 1. Adds the speed-up and the relative HR@10 loss
    against the first row.
    """
    policies = list(policies)
    rows = []
    for policy in policies:
        items, _ = search(model, q, policy, k)
        quality = gen.evaluate(items, logs)
        rows.append({"policy": policy.name, "hr@10": quality["hr@10"], "mrr@10": quality["mrr@10"],
                     "valid": quality["valid"]})
    n = len(q) if timed is None else min(timed, len(q))
    times = np.zeros((len(policies), n))
    counts = [{} for _ in policies]
    batched = np.zeros(len(policies))
    with config.one_torch_thread():
        for i in range(min(20, n)):  # warm-up: a process's first searches run slow (allocator, caches)
            search(model, q.take(slice(i, i + 1)), policies[0], k)
        for i in config.progress(range(n), desc="latency", unit="query"):
            one = q.take(slice(i, i + 1))
            for p, policy in enumerate(policies):
                runs = []
                for r in range(repeats):
                    t0 = time.perf_counter()
                    search(model, one, policy, k, counts[p] if r == 0 else None)
                    runs.append(time.perf_counter() - t0)
                times[p, i] = np.median(runs) * 1000
        for p, policy in enumerate(policies):
            part = q.take(slice(0, min(len(q), 2 * batch)))
            t0 = time.perf_counter()
            for start in range(0, len(part), batch):
                search(model, part.take(slice(start, start + batch)), policy, k)
            batched[p] = (time.perf_counter() - t0) * 1000 / len(part)
    frame = pd.DataFrame(rows)
    frame["latency_ms"] = np.median(times, axis=1)
    frame[f"batch{batch}_ms"] = batched
    frame["encoder_tokens"] = [c["encoder_tokens"] / n for c in counts]
    frame["decoder_rows"] = [c["decoder_rows"] / n for c in counts]
    base = frame.iloc[0]
    frame["speedup"] = base["latency_ms"] / frame["latency_ms"]
    frame["hr10_rel_loss"] = (base["hr@10"] - frame["hr@10"]) / base["hr@10"]
    return frame


def best(frame: pd.DataFrame, max_loss: float = 0.01) -> pd.Series:
    """The largest speed-up whose relative HR@10 loss is at most ``max_loss``."""
    ok = frame[frame["hr10_rel_loss"] <= max_loss + 1e-12]
    return ok.loc[ok["speedup"].idxmax()]


def settings(policy: Policy) -> dict:
    """The fields of ``policy`` that differ from the defaults (JSON-able; ``Policy(**settings)``)."""
    default = Policy()
    return {f: getattr(policy, f) for f in ("keep_ratio", "token_mass", "delta", "tau", "min_beams")
            if getattr(policy, f) != getattr(default, f)}
