"""Multi-view SKU vectors (notebook 02): one vector per SKU from every image that shows it.

OneVision's semantic IDs quantize *fused* item vectors: the SKU's catalogue views and the shoppers'
training photos of it, so that the codes sit where queries land (kit choice: a weighted mean of the
two view kinds, ``VRQ query_weight``). The baselines and the catalogue-only ablations read
catalogue views alone.
"""

from __future__ import annotations

import numpy as np

from .recall import l2_normalise


def check_embeddings(x: np.ndarray, what: str) -> np.ndarray:
    """float32 copy of ``x``; NaN/inf or all-zero rows are an error naming how many and which."""
    x = np.asarray(x, np.float32)
    bad = ~np.isfinite(x).all(1) | (np.abs(x).sum(1) == 0)
    if bad.any():
        raise ValueError(f"{what}: {bad.sum()} of {len(x)} vectors are NaN, infinite or all zero "
                         f"(rows {np.flatnonzero(bad)[:5].tolist()}...). Rebuild the upstream embeddings "
                         f"(notebook 01) or drop those items.")
    return x


def item_views(catalogue, train_queries: bool = True) -> list[np.ndarray]:
    """For every SKU, the view ids that describe it: catalogue views (+ its training query views)."""
    views = catalogue.views
    keep = views["kind"] == "catalog"
    if train_queries:
        keep |= (views["kind"] == "query") & (views["split"] == "train")
    groups = views[keep].groupby("item_id")["view_id"].apply(np.asarray)
    return [groups.get(i, np.zeros(0, int)) for i in range(len(catalogue.items))]


def item_vectors(catalogue, view_embeddings: np.ndarray, query_weight: float = 0.5) -> np.ndarray:
    """Multi-view item vector per SKU (n_items, d), L2-normalised.

    ``normalise((1 − w)·mean(catalogue views) + w·mean(training query views))``; SKUs without
    training queries (cold ones) use their catalogue views alone.
    """
    views = catalogue.views
    emb = check_embeddings(view_embeddings, "view embeddings")
    item_of = views["item_id"].to_numpy()
    n, d = len(catalogue.items), emb.shape[1]

    def mean_of(mask):
        sums, counts = np.zeros((n, d), np.float64), np.zeros(n)
        np.add.at(sums, item_of[mask], emb[mask])
        np.add.at(counts, item_of[mask], 1)
        return l2_normalise(sums / np.maximum(counts, 1)[:, None]), counts > 0

    catalog, has_catalog = mean_of((views["kind"] == "catalog").to_numpy())
    if not has_catalog.all():
        raise ValueError(f"{(~has_catalog).sum()} SKUs have no catalogue view (e.g. item "
                         f"{np.flatnonzero(~has_catalog)[0]}): every product needs a shop image")
    query, has_query = mean_of(((views["kind"] == "query") & (views["split"] == "train")).to_numpy())
    w = np.where(has_query, query_weight, 0.0)[:, None]
    return l2_normalise((1 - w) * catalog + w * query).astype(np.float32)


def catalogue_only_vectors(catalogue, view_embeddings: np.ndarray) -> np.ndarray:
    """Item vectors from catalogue views alone (the baselines' input: no multi-view fusion)."""
    return item_vectors(catalogue, view_embeddings, query_weight=0.0)
