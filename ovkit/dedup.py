"""Disambiguation (notebook 02, VRQ step 5): every SKU gets its own semantic ID.

SKUs whose code paths coincide after the residual levels and the OPQ tail are near-duplicates; the
one closest to the shared ID keeps it, the others move to their nearest free last code, and when a
prefix has more near-duplicates than the last codebook has codes, a token is appended instead.
"""

from __future__ import annotations

import numpy as np

from .kmeans import CHUNK, squared_distances


class LastDistances:
    """Squared distances (N, K) of items to the codes of the last SID position, row by row on demand.

    A small table is computed whole (as it always was); at a million items × 256 codes it would take
    1 GB, so a large one keeps the residuals and computes the rows it is asked for.
    """

    DENSE_CELLS = 1 << 25

    def __init__(self, parts, table: np.ndarray | None = None):
        self.parts, self.table = parts, table  # parts: [(residual (N, w), codebook (K, w)), ...]

    @classmethod
    def of(cls, parts) -> LastDistances:
        n, k = len(parts[0][0]), len(parts[0][1])
        return cls(parts, cls._compute(parts, slice(None)) if n * k <= cls.DENSE_CELLS else None)

    @staticmethod
    def _compute(parts, rows):
        return sum(squared_distances(np.atleast_2d(r[rows]), book) for r, book in parts)

    @classmethod
    def gather(cls, n: int, pieces) -> LastDistances:
        """One table for ``n`` items from ``pieces`` [(rows, LastDistances of those rows), ...]."""
        pieces = [(rows, d) for rows, d in pieces if len(rows)]
        if all(d.table is not None for _, d in pieces):
            table = np.zeros((n, pieces[0][1].shape[1]), pieces[0][1].table.dtype)
            for rows, d in pieces:
                table[rows] = d.table
            return cls(None, table)
        parts = []
        for j, (_, book) in enumerate(pieces[0][1].parts):
            residual = np.zeros((n, book.shape[1]), np.float32)
            for rows, d in pieces:
                residual[rows] = d.parts[j][0]
            parts.append((residual, book))
        return cls(parts)

    @property
    def shape(self) -> tuple:
        return self.table.shape if self.table is not None else (len(self.parts[0][0]), len(self.parts[0][1]))

    def row(self, i: int) -> np.ndarray:
        return self.table[i] if self.table is not None else self._compute(self.parts, slice(i, i + 1))[0]

    def own(self, last: np.ndarray) -> np.ndarray:
        """Each item's distance to its own last code ``last`` (N,)."""
        if self.table is not None:
            return self.table[np.arange(len(last)), last]
        return np.concatenate([self._compute(self.parts, slice(s, s + CHUNK))[np.arange(len(c)), c]
                               for s, c in ((s, last[s : s + CHUNK]) for s in range(0, len(last), CHUNK))])


def disambiguate(codes: np.ndarray, last_dist, mode: str, order=None, taken=None):
    """Make every SID unique.

    ``reassign``: within a group sharing a SID, the item closest to it keeps it; the others move to
    their nearest free code at the last position. ``append``: add a token counting the items of
    each group (0 for the first). Items are processed in ``order`` (default: closest first) after
    the SIDs in ``taken`` (e.g. existing SKUs, which never move). When ``reassign`` finds every
    last code under a prefix taken (more near-duplicates than codes), the items left over keep their
    SID and a token is appended to all SIDs as for ``append`` (0 for everybody else).

    Args:
        codes: (N, L) raw SIDs.
        last_dist: (N, K) distances to the last position's codes (an array or :class:`LastDistances`).
    Returns:
        (codes, moved, appended): codes (N, L) or (N, L+1), and bool masks (N,) of the items whose last
        code moved and of those that needed the appended token.
    """
    codes = np.array(codes)
    dist = last_dist if isinstance(last_dist, LastDistances) else LastDistances(None, np.asarray(last_dist))
    own = dist.own(codes[:, -1])
    order = np.argsort(own, kind="stable") if order is None else np.asarray(order)
    used = {} if taken is None else dict(taken)  # SID (or prefix for append) → items so far
    moved, appended = np.zeros(len(codes), bool), np.zeros(len(codes), bool)
    extra = np.zeros(len(codes), np.int64)
    full = {}  # prefix → number of codes under it that are taken (the search stops early when all are)
    for i in order:
        sid = tuple(codes[i].tolist())
        if mode == "append":
            extra[i] = used.get(sid, 0)
            used[sid] = extra[i] + 1
            moved[i] = extra[i] > 0
            continue
        if sid in used:
            if full.get(sid[:-1], 0) < dist.shape[1]:
                for c in np.argsort(dist.row(i), kind="stable"):
                    if sid[:-1] + (int(c),) not in used:
                        codes[i, -1], moved[i] = c, True
                        break
            if not moved[i]:  # every last code under this prefix is taken: count it in a new token
                appended[i] = True
                extra[i] = used[sid]
                used[sid] += 1
                continue
        sid = tuple(codes[i].tolist())
        used[sid] = 1
        full[sid[:-1]] = full.get(sid[:-1], 0) + 1
    if mode == "append" or appended.any():
        return np.concatenate([codes, extra[:, None]], 1), moved, appended
    return codes, moved, appended
