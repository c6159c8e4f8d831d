"""The kit at a real shop's size (notebook 07, ``benchmarks/scale.py``): synthetic catalogues of
10k–1M SKUs through VRQ, the trie, beam search and the cascade's recall.

The Sweet Home 3D catalogue has ~2,000 SKUs; an engineer's own shop has 10⁵–10⁶. Rendering that
many products is out of reach on a laptop, so the size path is exercised on **synthetic embeddings**
that have the structure VRQ and the decoder must cope with (a kit choice, documented in
:func:`synthetic_catalogue`): product types, products within a type, near-duplicate colourways of
one product, and several noisy views of every SKU.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import gen, timing, vrq
from .recall import l2_normalise, recall_index


@dataclass
class Synthetic:
    """A synthetic catalogue in embedding space (every vector unit length)."""

    items: np.ndarray  # (N, d) SKU vectors (what VRQ quantizes and the output prior reads)
    types: np.ndarray  # (N,) product type of each SKU
    views: np.ndarray  # (V, d) view embeddings (catalogue images and training photos)
    owner: np.ndarray  # (V,) the SKU of each view
    cold: np.ndarray  # (N,) bool: new SKUs the quantizer is not fitted on
    n_types: int

    def queries(self, n: int, seed: int = 1, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """``n`` fresh shopper photos (n, d) of random SKUs, and the SKU each shows (n,)."""
        rng = np.random.default_rng(seed)
        truth = rng.integers(0, len(self.items), n)
        return _jitter(self.items[truth], noise, rng), truth


def _jitter(x: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``normalise(x + scale · u)`` with ``u`` a random unit vector per row."""
    u = l2_normalise(rng.standard_normal(x.shape, dtype=np.float32))
    return l2_normalise(x + scale * u).astype(np.float32)


def synthetic_catalogue(n_items: int, dim: int = 256, views: int = 2, n_types: int = 32, colourways: int = 4,
                        cold_share: float = 0.01, seed: int = 0, chunk: int = 1 << 17) -> Synthetic:
    """A clustered synthetic catalogue of ``n_items`` SKUs (the generator of the scale benchmark).

    - ``n_types`` product types: random unit centres;
    - products: ``normalise(type centre + 1.0 · u)`` (cosine ≈ 0.7 to their type centre);
    - ``colourways`` SKUs per product: ``normalise(product + 0.3 · u)``: near-duplicates (cosine
      ≈ 0.96), the ones VRQ's deep codes must keep apart;
    - ``views`` views per SKU: ``normalise(SKU + 0.3 · u)``, as noisy as a sibling is far;
    - ``cold_share`` of the SKUs are new (the quantizer is not fitted on them),

    with ``u`` a fresh random unit vector each time. Built ``chunk`` SKUs at a time (float32).
    """
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((n_types, dim), dtype=np.float32))
    n_products = -(-n_items // colourways)
    product_type = rng.integers(0, n_types, n_products)
    items = np.zeros((n_items, dim), np.float32)
    view_x = np.zeros((n_items * views, dim), np.float32)
    step = chunk // colourways  # whole products per block: a product's colourways are made together
    for first in range(0, n_products, step):
        products = np.arange(first, min(first + step, n_products))
        base = np.repeat(_jitter(centres[product_type[products]], 1.0, rng), colourways, 0)
        rows = np.arange(first * colourways, first * colourways + len(base))[: n_items - first * colourways]
        items[rows] = _jitter(base[: len(rows)], 0.3, rng)
        for v in range(views):
            view_x[rows * views + v] = _jitter(items[rows], 0.3, rng)
    types = np.repeat(product_type, colourways)[:n_items]
    cold = rng.random(n_items) < cold_share
    return Synthetic(items, types, view_x, np.repeat(np.arange(n_items), views), cold, n_types)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def quantize(cat: Synthetic, cfg: vrq.VRQConfig) -> dict:
    """VRQ on a synthetic catalogue: SIDs and the facts of the fit (seconds, peak memory, collisions)."""
    start = time.perf_counter()
    out = vrq.quantize(cat.items, cat.types, cat.n_types, cat.views, cat.owner, cat.cold, cfg)
    seconds = time.perf_counter() - start
    raw_unique = len(np.unique(out["raw"], axis=0)) / len(out["raw"])
    return {"codes": out["codes"], "sizes": out["sizes"], "fit_s": seconds, "peak_gb": peak_rss_gb(),
            "collisions": 1 - raw_unique, "moved": out["n_moved"], "appended": out["n_appended"]}


def generative_model(cat: Synthetic, codes: np.ndarray, sizes, overrides: dict | None = None,
                     n_visual: int = 2) -> gen.OneVision:
    """A OneVision model (untrained, seeded) over the synthetic catalogue's SIDs."""
    torch.manual_seed(0)
    cfg = gen.GenConfig.from_overrides(overrides)
    return gen.OneVision(cfg, gen.Trie(codes, sizes), cat.items, n_visual).eval()


def photo_queries(photos: np.ndarray, n_visual: int = 2, history: int = 8, seed: int = 2) -> gen.Queries:
    """gen.Queries of photo embeddings: the photo as global token, jittered copies as visual tokens."""
    rng = np.random.default_rng(seed)
    visual = np.stack([_jitter(photos, 0.1, rng) for _ in range(n_visual)], 1)
    return gen.Queries(photos, visual, np.full((len(photos), history), -1), np.zeros(len(photos), np.int64))


def pretrain(model: gen.OneVision, cat: Synthetic, steps: int, progress: bool = True):
    """Pretrain on (view → its SKU) pairs of the warm SKUs, as notebook 04 does with catalogue views."""
    warm = ~cat.cold[cat.owner]
    q = photo_queries(cat.views[warm], model.visual_pos.shape[0], model.cfg.history)
    data = gen.Examples(q, cat.owner[warm], np.ones(int(warm.sum()), np.float32))
    return gen.train_likelihood(model, data, steps, "pretrain", model.cfg.lr, progress=progress)


def timed(fn, repeats: int) -> np.ndarray:
    """Wall times (ms) of ``repeats`` calls of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return np.asarray(times)


def beam_latency(model: gen.OneVision, queries: gen.Queries, batch: int, repeats: int, k: int = 10, *,
                 beam: int) -> float:
    """p50 wall time (ms) of one beam-search call on ``batch`` queries (cycling through ``queries``)."""
    calls = iter(range(10**9))

    def one():
        start = next(calls) * batch % max(len(queries) - batch, 1)
        batch_queries = queries.take(np.arange(start, start + batch))
        gen.beam_search(model, batch_queries, k=k, beam=beam, batch_size=batch)

    return float(np.median(timed(one, repeats)))


def recall_latency(index, photos: np.ndarray, n: int, repeats: int) -> float:
    """p50 wall time (ms) of one single-query top-``n`` search."""
    calls = iter(range(10**9))

    def one():
        i = next(calls) % len(photos)
        index.search(photos[i : i + 1], n)

    return float(np.median(timed(one, repeats)))


def beam_runner(model: gen.OneVision, queries: gen.Queries, k: int = 10, *, beam: int):
    """``run(which)`` for :mod:`ovkit.timing`: beam search on query ``which`` (an index or a slice)."""
    every = np.arange(len(queries))
    return lambda which: gen.beam_search(model, queries.take(every[timing.rows(which)]), k=k, beam=beam,
                                         batch_size=len(every))


def recall_runner(index, photos: np.ndarray, n: int = 200):
    """``run(which)`` for :mod:`ovkit.timing`: a top-``n`` search for photo ``which``."""
    return lambda which: index.search(photos[timing.rows(which)], n)


def recall_agreement(approximate, exact, photos: np.ndarray, n: int = 200) -> float:
    """Recall@n of an approximate index against exact search: the share of the exact top-n it finds."""
    _, want = exact.search(photos, n)
    _, got = approximate.search(photos, n)
    return float(np.mean([len(np.intersect1d(w, g)) / n for w, g in zip(want, got, strict=True)]))


def cascade_indexes(cat: Synthetic, exact_max: int = 50_000, probe: int = 32) -> dict:
    """The cascade's recall index over the SKU vectors: exact, and what ``MCA index="auto"`` builds."""
    return {"flat": recall_index(cat.items, "flat"),
            "auto": recall_index(cat.items, "auto", exact_max, probe)}
