"""Semantic-ID tokens and their prefix trie: the decoder's vocabulary (one token range per SID level)
and the sparse child table that lets beam search emit only real SKUs' IDs."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

BOS = 0  # the decoder's start token; SID tokens follow (level l's codes at offsets[l])


def codes_fingerprint(codes: np.ndarray) -> str:
    """Hash of a SID table: a checkpoint is only valid for the SIDs it was trained on."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    return hashlib.sha256(codes.tobytes() + str(codes.shape).encode()).hexdigest()[:16]


class Trie:
    """Prefix trie of every SKU's SID in sparse (CSR) arrays, so beam search masks a batch at once.

    Level ``l`` has ``n_l`` prefix nodes (node 0 of level 0 is the root), numbered in sorted prefix
    order. The children of node ``v`` are the edges ``indptr[l][v] : indptr[l][v+1]``: edge ``e``
    reads code ``code[l][e]`` and leads to node ``e`` of level ``l+1`` (nodes are numbered in
    (parent, code) order, so an edge's index *is* its child). ``leaf_item`` maps the nodes after
    the last level to SKU ids; ``path[item, l]`` is the node an item passes at level l. A dense
    (n_l × codebook) child table would take 3.5 GB at a million SKUs with 4096/1024/512 codes.
    """

    def __init__(self, codes: np.ndarray, sizes):
        codes = np.asarray(codes, np.int64)
        n, depth = codes.shape
        if len(sizes) != depth:
            raise ValueError(f"{depth} code levels but {len(sizes)} level sizes")
        if codes.min() < 0 or (codes >= np.asarray(sizes)).any():
            raise ValueError("a SID code is outside its level's codebook")
        self.sizes = tuple(int(s) for s in sizes)
        self.offsets = 1 + np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.n_tokens = 1 + sum(self.sizes)
        self.codes = codes
        self.path = np.zeros((n, depth + 1), np.int64)
        for level in range(1, depth + 1):
            self.path[:, level] = np.unique(codes[:, :level], axis=0, return_inverse=True)[1].ravel()
        self.indptr, self.code = [], []
        for level in range(depth):
            child, first = np.unique(self.path[:, level + 1], return_index=True)
            parent = self.path[first, level]  # nondecreasing, as children are numbered by (parent, code)
            n_nodes = int(self.path[:, level].max()) + 1
            self.indptr.append(np.searchsorted(parent, np.arange(n_nodes + 1)).astype(np.int32))
            self.code.append(codes[first, level].astype(np.int32))
        leaves = self.path[:, depth]
        if len(np.unique(leaves)) != n:
            raise ValueError("two SKUs share a semantic ID: the trie needs unique SIDs (VRQ dedup)")
        self.leaf_item = np.empty(n, np.int64)
        self.leaf_item[leaves] = np.arange(n)

    @property
    def depth(self) -> int:
        return len(self.sizes)

    @property
    def nodes_after(self) -> list:
        """How many nodes each level leads to (the next level's prefixes; SKUs after the last)."""
        return [len(ptr) - 1 for ptr in self.indptr[1:]] + [len(self.codes)]

    @property
    def nbytes(self) -> int:
        """Memory of the trie's tables (CSR levels, item paths, leaf map)."""
        return sum(a.nbytes for a in (*self.indptr, *self.code, self.path, self.leaf_item))

    def branching(self):
        """One row per level: its prefixes (trie nodes) and their mean number of children."""
        import pandas as pd

        return pd.DataFrame({"prefixes": [len(ptr) - 1 for ptr in self.indptr],
                             "mean children": [np.diff(ptr).mean() for ptr in self.indptr]},
                            index=[f"level {level + 1}" for level in range(self.depth)])

    def children(self, level: int, nodes) -> np.ndarray:
        """Dense child rows (len(nodes), size_l) of ``nodes`` at ``level``: child node or -1."""
        return expand_children(torch.from_numpy(self.indptr[level]), torch.from_numpy(self.code[level]),
                               torch.as_tensor(np.asarray(nodes, np.int64)), self.sizes[level]).numpy()

    def tokens(self, items) -> np.ndarray:
        """Decoder tokens (…, L) of SKU ids (…)."""
        return self.codes[np.asarray(items)] + self.offsets

    def contains(self, codes: np.ndarray) -> np.ndarray:
        """Whether each code path (…, L) is the SID of some SKU."""
        shape = np.shape(codes)[:-1]
        codes = np.asarray(codes).reshape(-1, self.depth)
        node = np.zeros(len(codes), np.int64)
        for level in range(self.depth):  # edges sorted by (parent, code): one binary search per level
            size, indptr = self.sizes[level], self.indptr[level]
            keys = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)) * size + self.code[level]
            want = np.maximum(node, 0) * size + codes[:, level]
            edge = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
            known = (node >= 0) & (codes[:, level] >= 0) & (codes[:, level] < size)
            node = np.where(known & (keys[edge] == want), edge, -1)
        return (node >= 0).reshape(shape)


def expand_children(indptr: torch.Tensor, code: torch.Tensor, nodes: torch.Tensor, size: int) -> torch.Tensor:
    """Dense child rows (R, size) of ``nodes`` (R,) from one CSR level: child node id, or -1."""
    start, count = indptr[nodes].long(), (indptr[nodes + 1] - indptr[nodes]).long()
    row = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), count)
    first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    edge = torch.repeat_interleave(start, count) + torch.arange(len(row), device=nodes.device) - first
    out = torch.full((len(nodes), size), -1, dtype=torch.long, device=nodes.device)
    out[row, code[edge].long()] = edge
    return out
