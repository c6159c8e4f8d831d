"""Trie-constrained beam search over OneVision's SID levels, and the exhaustive oracle it is tested
against (:func:`score_all`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .model import OneVision, Queries
from .trie import BOS


@torch.inference_mode()
def beam_search(model: OneVision, q: Queries, k: int = 10, *, beam: int, batch_size: int = 256,
                constrained: bool = True, visual_keep=None, width=None, stats: dict | None = None):
    """Top-``k`` SKUs per query by beam search masked with the SID trie (every result is a real SKU).

    Every query is searched on its own terms: its results do not depend on the batch it is in.

    Args:
        model: the generative model.
        q: B queries.
        k: results per query.
        beam: beams kept after each level. Always given by the caller (e.g. ``GEN``'s ``beam`` of
            the run): never read from the model's saved config, so a cached model is served with
            the decoding settings of the run that serves it.
        batch_size: queries searched together.
        constrained: False drops the trie mask (to show why it is there): a decoded path that is no
            SKU's SID comes back as -1.
        visual_keep: (B, K) bool, the visual tokens each query encodes (token pruning, ``ovkit.prune``).
        width: ``width(level, score (b, n) sorted best first) -> (b,)`` int widths (an int: every
            row), how many of each query's best beams live on after a level (beam pruning); the
            others die (score -inf). None: all ``beam`` live.
        stats: collects ``encoder_tokens`` and ``decoder_rows`` (live beams × levels), summed
            over queries; both are per query, so the same for a query alone or in a batch.
    Returns:
        (items (B, k) int64, log-probabilities (B, k)), best first; a slot no live beam could fill
        holds -1 / -inf.
    """
    if beam < k:
        raise ValueError(f"beam width {beam} is smaller than k={k}: the search keeps only {beam} "
                         f"sequences, so it cannot return {k} SKUs; raise GEN beam or lower k")
    if model.training:  # (eval() walks every submodule: a cost at batch 1 when it is already in eval)
        model.eval()
    items, scores = [], []
    for start in range(0, len(q), batch_size):
        part = slice(start, start + batch_size)
        keep = None if visual_keep is None else np.asarray(visual_keep)[part]
        i, s = beam_batch(model, q.take(part), k, beam, constrained, keep, width, stats)
        items.append(i)
        scores.append(s)
    return np.concatenate(items), np.concatenate(scores)


def _count(stats, key: str, value: int) -> None:
    """Add ``value`` to ``stats[key]`` (no-op without stats)."""
    if stats is not None:
        stats[key] = stats.get(key, 0) + value


def _prune_beams(score, flat, level: int, width):
    """Kill each row's beams beyond its width, then drop the columns no row keeps alive.

    Args:
        score: (b, n) beam log-probabilities, sorted best first per row.
        flat: (b, n) the beams' flat (parent, code) indices.
        level: the SID level just decoded.
        width: the pruning hook, or None (only beams that are dead already are dropped).
    Returns:
        (score (b, m), flat (b, m)) with m ≤ n; dead beams score -inf.
    """
    b, n = score.shape
    if width is not None:
        w = torch.as_tensor(width(level, score), dtype=torch.long, device=score.device).expand(b)
        dead = torch.arange(n, device=score.device)[None] >= w.clamp(1, n)[:, None]
        score = score.masked_fill(dead, float("-inf"))
    # rows are sorted, so live beams lead; columns dead in every row need no decoding (at batch 1
    # this is what makes pruning cheaper, and -inf beams could only produce -inf children anyway)
    m = max(1, int(torch.isfinite(score).sum(1).max()))
    return score[:, :m], flat[:, :m]


def beam_batch(model: OneVision, q: Queries, k: int, beam: int, constrained: bool = True, visual_keep=None,
                width=None, stats=None):
    """:func:`beam_search` of one batch: (items (b, k), log-probabilities (b, k)) as numpy."""
    trie, dev = model.trie, model.device
    mem = model.encode(q, visual_keep=visual_keep)
    b = len(q)
    score = torch.full((b, 1), 0.0, device=dev)  # one live beam per query: the root
    node = torch.zeros(b, 1, dtype=torch.long, device=dev)  # -1: a prefix no SKU has (unconstrained)
    tokens = torch.full((b, 1), BOS, dtype=torch.long, device=dev)  # each beam's next decoder input
    cache = model.start_decoding(mem)
    _count(stats, "encoder_tokens", int((~mem.mask).sum()))
    for level in range(trie.depth):
        n = score.shape[1]  # beams carried into this level
        # only live beams count: a query's work must not depend on its batch's widest query
        _count(stats, "decoder_rows", int(torch.isfinite(score).sum()))
        rows = torch.arange(b, device=dev).repeat_interleave(n)
        hidden = model.decode_step(cache, tokens).reshape(b * n, -1)
        child = model.child_rows(level, node.clamp(min=0).reshape(-1))  # (b·n, size): child node or -1
        logp = model.level_logprobs(hidden, level, node.reshape(-1), mem.prior, rows, constrained, child)
        logp = logp.view(b, n, -1)
        total = (score[..., None] + logp).reshape(b, -1)  # invalid codes and dead beams' children: -inf
        score, flat = total.topk(min(beam, total.shape[1]), dim=1)
        if level < trie.depth - 1:
            score, flat = _prune_beams(score, flat, level, width)
        parent, code = flat // logp.shape[-1], flat % logp.shape[-1]
        was = node.gather(1, parent)
        child = child.view(b, n * trie.sizes[level]).gather(1, flat)  # the chosen (parent, code) children
        node = torch.where(was >= 0, child, -1)
        if level < trie.depth - 1:
            cache.reorder(parent)
            tokens = code + int(trie.offsets[level])
    leaf = model.leaf_item[node.clamp(min=0)]
    items = torch.where(torch.isfinite(score) & (node >= 0), leaf, torch.full_like(leaf, -1))
    if items.shape[1] < k:  # fewer SKUs than k under the live beams
        pad = k - items.shape[1]
        items = F.pad(items, (0, pad), value=-1)
        score = F.pad(score, (0, pad), value=float("-inf"))
    return items[:, :k].cpu().numpy(), score[:, :k].cpu().numpy()


@torch.no_grad()
def score_all(model: OneVision, q: Queries, chunk: int = 512) -> np.ndarray:
    """log π of every SKU for every query (B, n_items), by teacher forcing (the exhaustive oracle)."""
    model.eval()
    n = len(model.trie.codes)
    mem = model.encode(q)
    out = np.zeros((len(q), n), np.float32)
    for row in range(len(q)):
        for start in range(0, n, chunk):
            items = torch.arange(start, min(start + chunk, n), device=model.device)[None]
            out[row, start : start + items.shape[1]] = model.sequence_logprob(
                mem.rows(slice(row, row + 1)), items).cpu().numpy()
    return out
