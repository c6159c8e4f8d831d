"""The vision-aligned output prior of OneVision's decoder (see :class:`ovkit.gen.OneVision`).

Each candidate code's logit gets ``scale_l · best cos(query, SKU)`` over the SKUs under that code.
:class:`DensePrior` scores every SKU (exact, B × #SKUs per batch); :class:`TopPrior` reads only the
query's top-M SKUs from a faiss index, so its cost does not grow with the catalogue.
"""

from __future__ import annotations

import numpy as np
import torch

# An IVF search for the top-M scans nprobe lists of ~√n SKUs each: probing enough lists to scan
# PROBE_FACTOR · M SKUs (on average) found ≥ 98.7% of the exact top-4096 on synthetic catalogues of
# 51k–200k SKUs (benchmarks/scale.py); 2 · M with 4·√n lists found 77–80% at 60k.
PROBE_FACTOR = 8


class DensePrior:
    """The output prior of every trie node: per level (B, n_nodes) the best cosine (+ bonus) of the
    query with a SKU under the node. Exact; costs B × #SKUs per query batch."""

    def __init__(self, levels: list):
        self.levels = levels

    @classmethod
    def build(cls, sims: torch.Tensor, node_of: torch.Tensor) -> DensePrior:
        """From ``sims`` (B, n_items) and ``node_of`` (L, n_items), each item's node per level."""
        return cls([torch.full((len(sims), int(nodes.max()) + 1), -1.0, device=sims.device).scatter_reduce(
            1, nodes.expand(len(sims), -1), sims, "amax") for nodes in node_of])

    def take(self, rows) -> DensePrior:
        return DensePrior([p[rows] for p in self.levels])

    def at(self, level: int, rows, child) -> torch.Tensor:
        """Prior (R, size) of child nodes ``child`` (R, size) of the queries ``rows`` (R,)."""
        return self.levels[level][rows[:, None], child.clamp(min=0)]


class TopPrior:
    """The output prior read from the query's M most similar SKUs only (a faiss search).

    A node with one of them under it scores the best of those (which is its true best, since they
    are the M best overall); a node with none scores the M-th best similarity, the most any SKU
    it holds can score. With M >= #SKUs this is :class:`DensePrior`. Stored per level as sorted
    keys ``row · n_nodes + node`` with their values, so a lookup is a binary search.
    """

    def __init__(self, hits: torch.Tensor, scores: torch.Tensor, node_of: torch.Tensor, n_nodes: list):
        self.hits, self.scores, self.node_of, self.n_nodes = hits, scores, node_of, n_nodes
        self.floor = scores[:, -1]  # sorted best first: the M-th best
        rows = torch.arange(len(hits), device=hits.device)[:, None]
        self.keys, self.values = [], []
        for level, n in enumerate(n_nodes):
            keys, inverse = torch.unique(rows * n + node_of[level][hits], return_inverse=True)
            self.keys.append(keys)
            self.values.append(torch.full((len(keys),), -1.0, device=hits.device).scatter_reduce(
                0, inverse.ravel(), scores.ravel(), "amax"))

    def take(self, rows) -> TopPrior:
        return TopPrior(self.hits[rows], self.scores[rows], self.node_of, self.n_nodes)

    def at(self, level: int, rows, child) -> torch.Tensor:
        want = rows[:, None] * self.n_nodes[level] + child.clamp(min=0)
        keys = self.keys[level]
        pos = torch.searchsorted(keys, want).clamp(max=len(keys) - 1)
        return torch.where(keys[pos] == want, self.values[level][pos], self.floor[rows][:, None])


def ivf_prior_index(base: np.ndarray, neighbours: int):
    """faiss IVF inner-product index of ``base`` (n, D) for top-``neighbours`` searches.

    √n lists, as the cascade's recall index (:func:`ovkit.recall.recall_index`): 4·√n lists of
    ~15 SKUs cost 10× the build time for no better recall at the same number of SKUs scanned.
    """
    from ..kmeans import ivf_index

    n = len(base)
    index = ivf_index(base, inner_product=True, lists=max(1, int(np.sqrt(n))))
    index.nprobe = int(min(index.nlist, max(16, -(-PROBE_FACTOR * neighbours * index.nlist // n))))
    return index


def top_recall(index, base: np.ndarray, queries: np.ndarray, m: int, chunk: int = 1 << 24) -> float:
    """Share of each query's exact top-``m`` rows of ``base`` by inner product that ``index`` finds
    among its ``m`` results (mean over ``queries``); exact scores are computed ``chunk`` cells at a time."""
    _, got = index.search(queries, m)
    rows = max(1, chunk // len(base))
    found = []
    for start in range(0, len(queries), rows):
        scores = queries[start : start + rows] @ base.T
        want = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        found += [len(np.intersect1d(w, g)) / m for w, g in zip(want, got[start : start + rows], strict=True)]
    return float(np.mean(found))
