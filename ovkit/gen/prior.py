"""The vision-aligned output prior of OneVision's decoder (see :class:`ovkit.gen.OneVision`).

Each candidate code's logit gets ``scale_l · best cos(query, SKU)`` over the SKUs under that code.
:class:`DensePrior` scores every SKU (exact, B × #SKUs per batch); :class:`TopPrior` reads only the
query's top-M SKUs from a faiss index, so its cost does not grow with the catalogue.
"""

from __future__ import annotations

import torch


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
