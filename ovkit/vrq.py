"""VRQ semantic IDs (notebook 02): every SKU gets a short code path, coarse to fine.

OneVision's *vision-aligned residual quantization* gives each product a semantic ID (SID) whose
shallow codes are shared by all views of the object and whose deep codes keep near-identical
products apart, with category features injected and an OPQ residual refinement at the end. The
exact recipe is not public; every piece below is a parameter of :class:`VRQConfig` and a *kit
choice*:

1. a **multi-view item vector** per SKU: its catalogue views fused with its training query views;
2. **category injection**: the shallow levels quantize ``[x, α·onehot(type)]``, so level-1 cells
   are type-coherent; a query's type is predicted from its image (k-NN over item vectors);
3. **residual k-means** levels (faiss k-means), optionally with **view-consensus** assignment (an
   item's shallow code is the one most of its views fall into) or **balanced** assignment;
4. an **OPQ tail** (faiss OPQ rotation + product quantizer) on the final residual;
5. **disambiguation**: SKUs that still share a full SID are re-assigned to the nearest free last
   code, or get an extra disambiguation token.

The fitted quantizer is plain NumPy state (saved as ``.npz``), so ``encode``/``decode`` need no
faiss objects. Baselines at the same code budget (RQ-KMeans, faiss ``ResidualQuantizer``, a
small RQ-VAE, OPQ/PQ alone) and the SID quality report live here too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import config, store
from .config import expect, with_overrides
from .dedup import LastDistances, disambiguate  # noqa: F401  (vrq.disambiguate is part of the API)
from .fusion import check_embeddings, item_vectors, item_views
from .kmeans import (
    CHUNK,
    FAISS_CELLS,
    fit_opq,
    kmeans,
    nearest,
    nearest_code,
    nearest_faiss,
    one_thread,
    squared_distances,
    top_inner_product,
)
from .recall import l2_normalise

STAGE_VERSION = 1  # bump when the stage's build code changes what it writes (see CONTRIBUTING.md)


# SID layouts at the same code budget (kit choices, issue 28): ``vrq`` quantizes each SKU's own fused
# vector, so colourways that look different may part at any level; ``shape_first`` quantizes every
# SKU by its 3D model's vector (the mean over its colourways, voted by all their views), so the
# colourways of a product share every code and only disambiguation (the last code) tells them apart;
# ``random`` quantizes seeded random vectors (one per SKU, its views voting with it): IDs of the same
# budget and balance that carry no meaning — does the decoder gain anything from semantic IDs?
LAYOUTS = ("vrq", "shape_first", "random")


@dataclass(frozen=True)
class VRQConfig:
    """VRQ settings (kit choices where the paper is silent). Defaults suit the default profile."""

    levels: tuple[int, ...] = (32, 32, 32)  # residual k-means codebook sizes, coarse to fine (powers of two)
    opq_codes: int = 2  # M codes of the OPQ tail on the last residual (0: no tail)
    opq_size: int = 32  # entries per OPQ code (a power of two)
    query_weight: float = 0.5  # weight of training query views in the fused item vector (0: catalogue only)
    category_column: str = "fine_type"  # item column injected into the shallow levels
    alpha: float = 1.0  # scale of the injected one-hot category (0: no injection)
    category_levels: int = 1  # how many shallow levels see the category
    consensus_levels: int = 1  # levels where an item's code is the majority vote of its views
    consensus_rounds: int = 3  # vote → recompute centroids rounds
    balanced_level: int = 0  # 1-based level with capacity-balanced assignment (0: none)
    type_neighbours: int = 20  # k of the k-NN type predictor for query images
    type_index: str = "views"  # k-NN type predictor searches "views" (catalogue + training photos) or "items"
    dedup: str = "reassign"  # reassign (nearest free last code) | append (extra token)
    layout: str = "vrq"  # vrq (each SKU by its own vector) | shape_first (by its 3D model) | random (LAYOUTS)
    kmeans_iters: int = 25
    kmeans_sample: int = 262_144  # most points one k-means level trains on (a seeded random subset)
    type_knn_max: int = 50_000  # most references the type k-NN reads; above, a linear classifier predicts
    seed: int = 0

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> VRQConfig:
        return with_overrides(cls, overrides, "VRQ")

    @property
    def budget(self) -> tuple:
        """Codebook sizes of every code position: the residual levels, then the OPQ tail."""
        return tuple(self.levels) + (self.opq_size,) * self.opq_codes

    def validate(self) -> None:
        for size in self.budget:
            if size < 2 or size & (size - 1):
                raise ValueError(f"VRQ codebook sizes must be powers of two >= 2 (faiss needs whole bits), "
                                 f"got {list(self.budget)}")
        if not self.levels:
            raise ValueError("VRQ needs at least one residual level")
        if self.type_index not in ("views", "items"):
            raise ValueError(f"VRQ type_index must be 'views' or 'items', got {self.type_index!r}")
        if self.dedup not in ("reassign", "append"):
            raise ValueError(f"VRQ dedup must be 'reassign' or 'append', got {self.dedup!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"VRQ layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not 0 <= self.query_weight <= 1:
            raise ValueError(f"VRQ query_weight must be in [0, 1], got {self.query_weight}")
        if self.balanced_level and self.balanced_level <= self.consensus_levels:
            raise ValueError(f"VRQ balanced_level ({self.balanced_level}) must be deeper than the "
                             f"consensus levels ({self.consensus_levels})")
        if self.balanced_level > len(self.levels):
            raise ValueError(f"VRQ balanced_level={self.balanced_level} but there are "
                             f"{len(self.levels)} levels")


# --------------------------------------------------------------------------- input checks


def check_budget(sizes, n_fit: int) -> None:
    """Every codebook must be fillable by the items it is fitted on."""
    for level, size in enumerate(sizes, start=1):
        if size > n_fit:
            smaller = [min(s, 2 ** int(np.log2(max(n_fit // 4, 2)))) for s in sizes]
            raise ValueError(f"code position {level} asks for {size} codes but only {n_fit} SKUs are there "
                             f"to fit them: use smaller codebooks (e.g. sizes {smaller})")
        if 2 * size > n_fit:
            config.warn(f"code position {level}: {size} codes for {n_fit} SKUs leaves fewer than 2 SKUs "
                        f"per code")


def check_space(sizes, n_items: int, dedup: str) -> None:
    """With ``reassign`` every SKU needs its own SID within the code budget."""
    space = float(np.prod(np.asarray(sizes, float)))
    if dedup == "reassign" and space < n_items:
        raise ValueError(f"the code space holds {space:.0f} SIDs for {n_items} SKUs: add levels or codes, "
                         f"or use dedup='append'")


def catalogue_fingerprint(catalogue) -> str:
    """Hash of the SKU table's identity columns: SIDs are only valid for the catalogue they index."""
    cols = [c for c in ("item_id", "sku", "model_id", "category") if c in catalogue.items]
    blob = pd.util.hash_pandas_object(catalogue.items[cols], index=False).to_numpy().tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- category injection


def category_labels(catalogue, column: str) -> tuple[np.ndarray, list[str]]:
    """Integer category of every SKU and the category names."""
    if column not in catalogue.items:
        raise ValueError(f"the items table has no column {column!r} to inject as the category; "
                         f"columns: {', '.join(catalogue.items.columns)}. Set VRQ category_column, "
                         f"or alpha=0 for no injection")
    codes, names = pd.factorize(catalogue.items[column].astype(str), sort=True)
    return codes.astype(np.int64), list(names)


# --------------------------------------------------------------------------- faiss helpers


def _stack(codes: list, n: int) -> np.ndarray:
    return np.stack(codes, 1) if codes else np.zeros((n, 0), np.int64)


# --------------------------------------------------------------------------- the quantizer


class SemanticQuantizer:
    """Fitted VRQ: residual codebooks (shallow ones over ``[x, α·category]``) + an OPQ tail.

    State is NumPy only: ``codebooks[l]`` (K_l, d or d+C), ``rotation`` (D, D), ``pq`` (M, ksub,
    D/M), and the type predictor's item vectors and labels.
    """

    def __init__(self, cfg: VRQConfig, dim: int, n_categories: int):
        self.cfg, self.dim = cfg, dim
        self.n_categories = n_categories if cfg.alpha and cfg.category_levels else 0
        self.codebooks: list[np.ndarray] = []
        self.rotation = np.zeros((0, 0), np.float32)
        self.pq = np.zeros((0, 0, 0), np.float32)
        self.type_vectors = np.zeros((0, dim), np.float32)
        self.type_labels = np.zeros(0, np.int64)
        self.view_types = np.zeros((0, self.n_categories), np.float32)  # fitted views' category part
        # a linear type classifier (C, d) + (C,), used instead of the k-NN above type_knn_max references
        self.type_weights, self.type_bias = np.zeros((0, dim), np.float32), np.zeros(0, np.float32)

    @property
    def sizes(self) -> tuple:
        return tuple(len(c) for c in self.codebooks) + (self.pq.shape[1],) * len(self.pq)

    # ---- category part
    def category_part(self, types=None, x=None) -> np.ndarray:
        """α·onehot(types) for items (known type) or α·P(type | image) for queries (predicted)."""
        if not self.n_categories:
            return np.zeros((len(x if types is None else types), 0), np.float32)
        if types is None:
            return self.cfg.alpha * self.predict_types(x)
        return self.cfg.alpha * np.eye(self.n_categories, dtype=np.float32)[types]

    def predict_types(self, x: np.ndarray) -> np.ndarray:
        """P(type | image) (N, C): vote shares of the k nearest item vectors (cosine), or the linear
        classifier's softmax when it was fitted instead (large catalogues, :func:`fit_type_classifier`)."""
        if len(self.type_weights):
            return np.concatenate([_softmax(x[i : i + CHUNK] @ self.type_weights.T + self.type_bias)
                                   for i in range(0, len(x), CHUNK)]) if len(x) else \
                np.zeros((0, self.n_categories), np.float32)
        k = min(self.cfg.type_neighbours, len(self.type_vectors))
        top = top_inner_product(x, self.type_vectors, k)
        probs = np.zeros((len(x), self.n_categories), np.float32)
        np.add.at(probs, (np.repeat(np.arange(len(x)), k), self.type_labels[top].ravel()), 1.0 / k)
        return probs

    # ---- one level
    def _level_distances(self, level: int, r: np.ndarray, s: np.ndarray) -> np.ndarray:
        book = self.codebooks[level]
        dist = squared_distances(r, book[:, : self.dim])
        if level < self.cfg.category_levels and self.n_categories:
            dist += squared_distances(s, book[:, self.dim :])
        return dist

    def _nearest(self, level: int, r: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest code of every row at ``level`` and its squared distance, in row blocks (NumPy for a
        small table, as the kit always did; faiss, several times faster, for a large one)."""
        book = self.codebooks[level]
        if not (level < self.cfg.category_levels and self.n_categories):
            return nearest_code(lambda rows: r[rows], book[:, : self.dim], len(r))
        if len(r) * len(book) <= FAISS_CELLS:
            return nearest(lambda rows: self._level_distances(level, r[rows], s[rows]), len(r))
        return nearest_faiss(lambda rows: np.concatenate([r[rows], s[rows]], 1), book, len(r))

    def _step(self, level, r, s, codes, inplace: bool = False):
        """Subtract the chosen centroids: the residual the next level quantizes.

        In row blocks (no (N, d) copy of the centroids), into new arrays, or into ``r``/``s``
        themselves with ``inplace`` (when they are this quantizer's own residuals, not its inputs).
        """
        book = self.codebooks[level]
        parts = [(r, book[:, : self.dim])]
        if level < self.cfg.category_levels and self.n_categories:
            parts.append((s, book[:, self.dim :]))
        out = [a if inplace else np.empty_like(a) for a, _ in parts]
        for (a, centroids), target in zip(parts, out, strict=True):
            for start in range(0, len(a), CHUNK):
                rows = slice(start, start + CHUNK)
                np.subtract(a[rows], centroids[codes[rows]], out=target[rows])
        return out[0], (out[1] if len(out) > 1 else s)

    def _vote(self, level, r, s, view_r, view_s, owner, n_items) -> np.ndarray:
        """Each item's code = the code most of its views (and the item itself) fall into.

        A view's vote weighs 2, the item's own 3 (so it breaks ties); a tie left over goes to the
        lowest code. Counted as sparse (item, code) pairs: a dense items × codes table would not fit.
        """
        size = len(self.codebooks[level])
        own = self._nearest(level, r, s)[0]
        views = self._nearest(level, view_r, view_s)[0] if len(owner) else np.zeros(0, np.int64)
        pair = np.concatenate([np.asarray(owner, np.int64), np.arange(n_items)]) * size + \
            np.concatenate([views, own])
        weight = np.concatenate([np.full(len(owner), 2, np.int32), np.full(n_items, 3, np.int32)])
        pairs, inverse = np.unique(pair, return_inverse=True)
        votes = np.bincount(inverse.ravel(), weights=weight).astype(np.int64)
        item, code = np.divmod(pairs, size)
        best = np.lexsort((code, -votes, item))  # per item: most votes, then the lowest code
        first = np.r_[True, item[best][1:] != item[best][:-1]]
        return code[best][first]

    # ---- tail
    def _tail_codes(self, r: np.ndarray) -> tuple[np.ndarray, LastDistances | None]:
        """OPQ tail codes (N, M) and the distances of the last sub-vector to its codebook."""
        if not len(self.pq):
            return np.zeros((len(r), 0), np.int64), None
        m, _, dsub = self.pq.shape
        z = self._pad(r) @ self.rotation.T
        codes = [nearest_code(lambda rows, j=j: z[rows, j * dsub : (j + 1) * dsub], self.pq[j], len(z))[0]
                 for j in range(m)]
        return np.stack(codes, 1), LastDistances.of([(z[:, (m - 1) * dsub :], self.pq[-1])])

    def _last_level_distances(self, r, s) -> LastDistances:
        """Distances of the last residual level (a SID without OPQ tail ends there)."""
        level = len(self.codebooks) - 1
        book = self.codebooks[level]
        parts = [(r, book[:, : self.dim])]
        if level < self.cfg.category_levels and self.n_categories:
            parts.append((s, book[:, self.dim :]))
        return LastDistances.of(parts)

    def _pad(self, r):
        width = self.rotation.shape[0]
        return np.pad(r, ((0, 0), (0, width - r.shape[1]))) if width > r.shape[1] else r

    # ---- public
    def encode(self, x: np.ndarray, types=None) -> np.ndarray:
        """Code path (N, levels+M) of embeddings ``x``: nearest centroid at every level.

        ``types`` (N,) int: known categories (items); None: predicted from ``x`` (query images).
        """
        x = check_embeddings(x, "embeddings to encode")
        return self.assign_items(x, types, x[:0], np.zeros(0, np.int64))[0]  # no views: nobody to vote

    def view_part(self, views_x: np.ndarray, width: int) -> np.ndarray:
        """The predicted category part (V, C) of view embeddings (none without views)."""
        return self.category_part(None, views_x) if len(views_x) else np.zeros((0, width), np.float32)

    def assign_items(self, x, types, views_x, owner, view_types=None):
        """SIDs of items: view-consensus votes at the consensus levels, nearest code elsewhere.

        ``views_x`` (V, d) are embeddings of the items' views and ``owner`` (V,) their item rows
        (``view_types``: their category part, if already computed). Returns codes (N, levels+M) and
        the distances at the last code position (:class:`LastDistances`).
        """
        r, s = np.asarray(x, np.float32), self.category_part(types, x)
        vr = np.asarray(views_x, np.float32)
        vs = view_types if view_types is not None else self.view_part(vr, s.shape[1])
        codes, last = [], None
        for level in range(len(self.codebooks)):
            if level < self.cfg.consensus_levels and len(vr):
                chosen = self._vote(level, r, s, vr, vs, owner, len(x))
            else:
                chosen = self._nearest(level, r, s)[0]
            if level == len(self.codebooks) - 1 and not len(self.pq):
                last = self._last_level_distances(r, s)
            codes.append(chosen)
            if len(vr):  # views follow their item's path (teacher forcing)
                vr, vs = self._step(level, vr, vs, chosen[owner], inplace=level > 0)
            r, s = self._step(level, r, s, chosen, inplace=level > 0)
        tail, tail_dist = self._tail_codes(r)
        head = _stack(codes, len(x))
        return np.concatenate([head, tail], 1), (tail_dist if tail_dist is not None else last)

    def decode(self, codes: np.ndarray, depth: int | None = None) -> np.ndarray:
        """Reconstruction (N, d) of the visual part from code paths (extra dedup tokens ignored).

        ``depth``: use only the first ``depth`` code positions (the error left after each level).
        """
        codes = np.asarray(codes)
        depth = len(self.sizes) if depth is None else depth
        out = np.zeros((len(codes), self.dim), np.float32)
        for level, book in enumerate(self.codebooks[:depth]):
            out += book[codes[:, level], : self.dim]
        used = min(len(self.pq), depth - len(self.codebooks))
        if used > 0:
            tail = codes[:, len(self.codebooks) :]
            z = np.concatenate([self.pq[j][tail[:, j]] if j < used else np.zeros_like(self.pq[j][tail[:, j]])
                                for j in range(len(self.pq))], 1)
            out += (z @ self.rotation)[:, : self.dim]  # the rotation is orthogonal: its inverse is Aᵀ
        return out

    # ---- persistence
    def state(self) -> dict:
        arrays = {f"codebook{i}": c for i, c in enumerate(self.codebooks)}
        arrays.update(rotation=self.rotation, pq=self.pq, type_vectors=self.type_vectors,
                      type_labels=self.type_labels, type_weights=self.type_weights, type_bias=self.type_bias)
        return arrays

    def save(self, path) -> None:
        np.savez(path, **self.state())

    @classmethod
    def load(cls, path, cfg: VRQConfig, n_categories: int) -> SemanticQuantizer:
        with np.load(path, allow_pickle=False) as f:
            q = cls(cfg, int(f["type_vectors"].shape[1]), n_categories)
            q.codebooks = [f[f"codebook{i}"] for i in range(len(cfg.levels))]
            q.rotation, q.pq = f["rotation"], f["pq"]
            q.type_vectors, q.type_labels = f["type_vectors"], f["type_labels"]
            if "type_weights" in f:  # quantizers saved before the classifier existed have none
                q.type_weights, q.type_bias = f["type_weights"], f["type_bias"]
        return q


def _move_to_members(book: np.ndarray, z: np.ndarray, codes: np.ndarray) -> None:
    """Set each used centroid to the mean of the rows assigned to it (rows in their original order)."""
    order = np.argsort(codes, kind="stable")
    used, starts = np.unique(codes[order], return_index=True)
    for c, rows in zip(used, np.split(order, starts[1:]), strict=True):
        book[c, : z.shape[1]] = z[rows].mean(0)


def _balanced_assign(dist: np.ndarray) -> np.ndarray:
    """Capacity-constrained assignment: greedy over (item, code) pairs by distance, ⌈n/K⌉ per code."""
    n, k = dist.shape
    capacity = np.full(k, -(-n // k))
    codes = np.full(n, -1)
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, c = divmod(int(flat), k)
        if codes[i] < 0 and capacity[c] > 0:
            codes[i], capacity[c] = c, capacity[c] - 1
    return codes


def fit(x: np.ndarray, types: np.ndarray, views_x: np.ndarray, owner: np.ndarray, cfg: VRQConfig,
        n_categories: int) -> SemanticQuantizer:
    """Fit VRQ on item vectors ``x`` (N, d) with categories ``types`` (N,).

    ``views_x`` (V, d) / ``owner`` (V,): embeddings of the items' views and the item row each
    belongs to (used by view consensus). The views' predicted category part is kept as
    ``q.view_types`` (assigning the same views again need not predict it again).
    """
    x = check_embeddings(x, "item vectors")
    check_budget(cfg.budget, len(x))
    q = SemanticQuantizer(cfg, x.shape[1], n_categories)
    types = np.asarray(types, np.int64)
    by_views = cfg.type_index == "views" and len(views_x)
    references = np.asarray(views_x if by_views else x, np.float32)  # not copied: nothing here writes to them
    labels = types[owner] if by_views else types
    if q.n_categories and len(references) > cfg.type_knn_max:  # k-NN over millions of views is too slow
        q.type_weights, q.type_bias = fit_type_classifier(references, labels, q.n_categories,
                                                          cfg.type_knn_max, cfg.seed)
        q.type_vectors, q.type_labels = references[:0], labels[:0]
    else:
        q.type_vectors, q.type_labels = references, labels
    r, s = x, q.category_part(types, x)  # every step below makes new arrays: the inputs stay as they are
    vr = np.asarray(views_x, np.float32)
    vs = q.view_types = q.view_part(vr, s.shape[1])
    for level, size in enumerate(cfg.levels):
        z = np.concatenate([r, s], 1) if level < cfg.category_levels else r
        with one_thread():  # multithreaded faiss training is not bit-reproducible; searches are
            q.codebooks.append(kmeans(z, size, cfg.seed + level, cfg.kmeans_iters, cfg.kmeans_sample))
        if level < cfg.consensus_levels:
            for _ in range(cfg.consensus_rounds):  # move the centroids to their voted members
                codes = q._vote(level, r, s, vr, vs, owner, len(x))
                _move_to_members(q.codebooks[level], z, codes)
            codes = q._vote(level, r, s, vr, vs, owner, len(x))
        elif level + 1 == cfg.balanced_level:
            codes = _balanced_assign(q._level_distances(level, r, s))
        else:
            codes = q._nearest(level, r, s)[0]
        if len(vr):
            vr, vs = q._step(level, vr, vs, codes[owner], inplace=level > 0)  # level 0 reads the inputs
        r, s = q._step(level, r, s, codes, inplace=level > 0)
    if cfg.opq_codes:
        with one_thread():
            q.rotation, q.pq = fit_opq(r, cfg.opq_codes, cfg.opq_size, cfg.seed, cfg.kmeans_sample)
    return q


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(1, keepdims=True))
    return (z / z.sum(1, keepdims=True)).astype(np.float32)


def fit_type_classifier(references: np.ndarray, labels: np.ndarray, n_types: int, sample: int, seed: int):
    """A multinomial logistic regression P(type | vector) on at most ``sample`` seeded references
    (kit choice for large catalogues, where the k-NN vote would search millions of views per query).

    Returns weights (C, d) and biases (C,); a type missing from the sample gets probability ~0.
    """
    from sklearn.linear_model import LogisticRegression

    rows = np.random.default_rng(seed).choice(len(references), min(sample, len(references)), replace=False)
    model = LogisticRegression(max_iter=200).fit(references[rows], labels[rows])
    weights = np.zeros((n_types, references.shape[1]), np.float32)
    bias = np.full(n_types, -1e4, np.float32)
    if len(model.classes_) == 2:  # sklearn's binary case: one row for class 1 (class 0 scores 0)
        weights[model.classes_[1]], bias[model.classes_[1]] = model.coef_[0], model.intercept_[0]
        bias[model.classes_[0]] = 0.0
    else:
        weights[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
    return weights, bias


# --------------------------------------------------------------------------- the stage


@dataclass
class SemanticIDs:
    """The SIDs of a catalogue: ``codes`` (n_items, L) unique, ``raw`` before disambiguation."""

    codes: np.ndarray
    raw: np.ndarray
    sizes: tuple  # entries per code position (the dedup token's too, for 'append')
    quantizer: SemanticQuantizer
    categories: list
    item_vectors: np.ndarray
    config: VRQConfig
    artifact: store.Artifact

    def check(self, catalogue) -> None:
        """Raise unless these SIDs were built for ``catalogue`` (same SKUs, by hash)."""
        built_for = self.artifact.meta["catalogue_fingerprint"]
        if catalogue_fingerprint(catalogue) != built_for:
            raise ValueError(f"these semantic IDs were built for another catalogue (fingerprint {built_for}, "
                             f"{len(self.codes)} SKUs), not {catalogue} (fingerprint "
                             f"{catalogue_fingerprint(catalogue)}): rebuild them with vrq.semantic_ids(...)")

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Code paths of query embeddings (their type predicted from the image)."""
        return self.quantizer.encode(embeddings)

    def table(self, catalogue) -> pd.DataFrame:
        """One row per SKU with its SID as text (``"5-17-3-…"``)."""
        self.check(catalogue)
        columns = [c for c in ("item_id", "name", "colour", "fine_type", "category") if c in catalogue.items]
        out = catalogue.items[columns].copy()
        out["sid"] = ["-".join(map(str, row)) for row in self.codes]
        return out


def semantic_ids(catalogue, embeddings: np.ndarray, embeddings_artifact, cfg: VRQConfig | None = None,
                 rebuild: bool = False) -> SemanticIDs:
    """Stage ``vrq``: fit VRQ on the warm SKUs, assign SIDs to every SKU (cold ones without refitting).

    Args:
        catalogue: the :class:`ovkit.data.Catalogue`.
        embeddings: (n_views, d) view embeddings from notebook 01 (``align.aligned(...)["embeddings"]``).
        embeddings_artifact: the artifact they came from (its key enters the cache key).
        cfg: the :class:`VRQConfig` (``VRQConfig.from_overrides(VRQ)``; None: its defaults).
    """
    cfg = expect(cfg, VRQConfig, "VRQ")
    fingerprint = catalogue_fingerprint(catalogue)

    def build(folder):
        result = build_ids(catalogue, embeddings, cfg)
        result.pop("quantizer").save(folder / "quantizer.npz")
        for name in ("codes", "raw", "item_vectors"):
            np.save(folder / f"{name}.npy", result.pop(name))
        return {**result, "catalogue_fingerprint": fingerprint}

    params = {**dataclasses.asdict(cfg), "catalogue": fingerprint}
    artifact = store.cached("vrq", params, build, upstream=[catalogue.artifact, embeddings_artifact],
                            version=STAGE_VERSION, rebuild=rebuild)
    return load_ids(artifact, catalogue)


def load_ids(artifact, catalogue) -> SemanticIDs:
    """The SIDs of a ``vrq`` artifact, checked against the catalogue they are used with."""
    cfg = VRQConfig.from_overrides(artifact.meta["config"])
    quantizer = SemanticQuantizer.load(artifact / "quantizer.npz", cfg, len(artifact.meta["categories"]))
    ids = SemanticIDs(np.load(artifact / "codes.npy"), np.load(artifact / "raw.npy"),
                      tuple(artifact.meta["sizes"]), quantizer, artifact.meta["categories"],
                      np.load(artifact / "item_vectors.npy"), cfg, artifact)
    ids.check(catalogue)
    return ids


def build_ids(catalogue, embeddings: np.ndarray, cfg: VRQConfig) -> dict:
    """Fit on warm SKUs, assign warm then cold SKUs, disambiguate; codes and facts as a dict."""
    emb = check_embeddings(embeddings, "view embeddings")
    if cfg.alpha and cfg.category_levels:
        types, names = category_labels(catalogue, cfg.category_column)
    else:
        types, names = np.zeros(len(catalogue.items), np.int64), []
    vectors = item_vectors(catalogue, emb, cfg.query_weight)
    per_item = item_views(catalogue)
    coded = vectors
    if cfg.layout == "shape_first":
        coded, per_item = by_model(vectors, per_item, catalogue.items["model_id"].to_numpy())
    view_ids = np.concatenate(per_item).astype(int) if per_item else np.zeros(0, int)
    owner = np.repeat(np.arange(len(per_item)), [len(v) for v in per_item])
    cold = catalogue.items["cold"].to_numpy().astype(bool)
    views_x = emb[view_ids]
    if cfg.layout == "random":  # meaningless vectors; each view votes with its SKU's, not its image
        noise = np.random.default_rng([cfg.seed, 17]).normal(size=vectors.shape)
        coded = l2_normalise(noise).astype(vectors.dtype)
        views_x = coded[owner]
    out = quantize(coded, types, len(names), views_x, owner, cold, cfg)
    return {**out, "item_vectors": vectors, "categories": names}  # the prior reads each SKU's own vector


def by_model(vectors: np.ndarray, per_item: list, model: np.ndarray) -> tuple[np.ndarray, list]:
    """The ``shape_first`` layout's inputs: every SKU gets its 3D model's vector (the normalised mean
    of its colourways' vectors, (N, d)) and the views of all its colourways (for the view vote)."""
    models, row = np.unique(model, return_inverse=True)
    sums = np.zeros((len(models), vectors.shape[1]), np.float64)
    np.add.at(sums, row, vectors)
    views = [np.concatenate([per_item[i] for i in np.flatnonzero(row == m)]) for m in range(len(models))]
    return l2_normalise(sums)[row].astype(vectors.dtype), [views[m] for m in row]


def colourway_prefix_share(catalogue, codes: np.ndarray, depth: int) -> float:
    """Share of colourway pairs (two SKUs of one 3D model) whose SIDs agree on their first ``depth``
    codes (``len(budget) - 1``: pairs a decoder can reach from one another by its last step; a token
    appended by disambiguation comes after the budget). NaN with no such pair."""
    groups = catalogue.items.groupby("model_id")["item_id"].apply(np.asarray)
    pairs = np.array([(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1:]])
    if not len(pairs):
        return float("nan")
    return float((codes[pairs[:, 0], :depth] == codes[pairs[:, 1], :depth]).all(1).mean())


def quantize(vectors: np.ndarray, types: np.ndarray, n_types: int, views_x: np.ndarray, owner: np.ndarray,
             cold: np.ndarray, cfg: VRQConfig) -> dict:
    """VRQ on arrays: fit on the warm items, assign warm then cold ones, disambiguate.

    Args:
        vectors: (N, d) item vectors; ``types`` (N,) their category (``n_types`` of them).
        views_x: (V, d) embeddings of the items' views; ``owner`` (V,) the item row of each.
        cold: (N,) bool, items the quantizer is not fitted on (new SKUs).
    Returns:
        codes (N, L) unique, raw codes before disambiguation, the quantizer and the SID facts.
    """
    warm_rows, cold_rows = np.flatnonzero(~cold), np.flatnonzero(cold)
    check_space(cfg.budget, len(cold), cfg.dedup)
    position = np.zeros(len(cold), np.int64)  # an item's row among the warm (or the cold) items
    position[warm_rows], position[cold_rows] = np.arange(len(warm_rows)), np.arange(len(cold_rows))

    def views_of(of_cold: bool):
        keep = cold[owner] == of_cold
        return views_x[keep], position[owner[keep]]

    warm_views, warm_owner = views_of(False)
    q = fit(vectors[warm_rows], types[warm_rows], warm_views, warm_owner, cfg, n_types)
    raw = np.zeros((len(cold), len(cfg.budget)), np.int64)
    raw[warm_rows], warm_dist = q.assign_items(vectors[warm_rows], types[warm_rows], warm_views, warm_owner,
                                               q.view_types)
    pieces, order = [(warm_rows, warm_dist)], [warm_rows[np.argsort(warm_dist.own(raw[warm_rows, -1]),
                                                                    kind="stable")]]
    cold_collisions = 0.0
    if len(cold_rows):  # new items: the fitted quantizer, no refit; existing SIDs never move
        cold_views, cold_owner = views_of(True)
        raw[cold_rows], cold_dist = q.assign_items(vectors[cold_rows], types[cold_rows], cold_views,
                                                   cold_owner)
        pieces.append((cold_rows, cold_dist))
        order.append(cold_rows[np.argsort(cold_dist.own(raw[cold_rows, -1]), kind="stable")])
    # warm SKUs first, each group closest first: a new SKU never takes an existing SKU's SID
    codes, moved, appended = disambiguate(raw, LastDistances.gather(len(raw), pieces), cfg.dedup,
                                          order=np.concatenate(order))
    if len(cold_rows):  # a cold SKU collides with an existing SID or with another cold SKU
        existing = codes[warm_rows, : raw.shape[1]] if cfg.dedup == "reassign" else raw[warm_rows]
        taken = set(map(tuple, existing.tolist()))
        cold_raw = pd.Series(list(map(tuple, raw[cold_rows].tolist())))
        repeats = cold_raw.map(cold_raw.value_counts())
        cold_collisions = float(np.mean(cold_raw.isin(taken) | (repeats > 1)))
    sizes = list(cfg.budget) + ([int(codes[:, -1].max()) + 1] if codes.shape[1] > len(cfg.budget) else [])
    return {"quantizer": q, "codes": codes, "raw": raw, "item_vectors": vectors, "sizes": sizes,
            "config": dataclasses.asdict(cfg), "n_moved": int(moved.sum()), "n_appended": int(appended.sum()),
            "cold_collision_rate": cold_collisions,
            "unique_after_dedup": len(set(map(tuple, codes.tolist()))) / len(codes)}
