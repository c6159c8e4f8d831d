"""k-means and the faiss helpers every quantizer here shares (VRQ, its baselines, the RQ-VAE start)."""

from __future__ import annotations

import numpy as np

from . import config


def one_thread():
    """faiss training with one OpenMP thread: multithreaded OPQ is not bit-reproducible (threadpoolctl
    sets faiss's and torch's OpenMP pools; BLAS is left alone, as faiss.omp_set_num_threads did)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


CHUNK = 65536  # rows per block when a (rows × codes) distance table would be too large to hold at once
FAISS_CELLS = 1 << 27  # nearest-code tables larger than this (rows × codes) are searched by faiss, not NumPy
SEEDING_POINTS = 8192  # k-means++ seeds from at most max(this, 8·k) points (one pass over them per centre)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 25, sample: int = 262_144) -> np.ndarray:
    """faiss k-means centroids (k, d), started from a k-means++ seeding.

    faiss starts from k random points, which can leave two centroids in one tight cluster and none
    in another; k-means++ (Arthur & Vassilvitskii 2007) spreads the start. At most ``sample``
    points train (a seeded random subset; faiss's own default is 256 per centroid), and the seeding
    looks at a smaller subset, so a 4096-code level over a million items costs minutes, not hours.
    """
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    rng = np.random.default_rng(seed)
    if len(x) > sample:
        x = x[np.sort(rng.choice(len(x), sample, replace=False))]
    seeding = max(SEEDING_POINTS, 8 * k)
    start = x if len(x) <= seeding else x[np.sort(rng.choice(len(x), seeding, replace=False))]
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, min_points_per_centroid=1,
                      max_points_per_centroid=1 << 20)
    km.train(x, init_centroids=kmeans_plus_plus(start, k, rng))
    return km.centroids.copy()


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance to the chosen ones."""
    centres = [x[rng.integers(len(x))]]
    closest = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = closest / closest.sum() if closest.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
        closest = np.minimum(closest, ((x - centres[-1]) ** 2).sum(1))
    return np.ascontiguousarray(centres, np.float32)


def unpack_codes(packed: np.ndarray, nbits) -> np.ndarray:
    """faiss bit-packed codes (N, code_size) uint8 → integer codes (N, len(nbits)).

    faiss writes each code's bits least-significant first, one code after the other
    (``BitstringWriter``), so codebooks that are not 256 wide share bytes.
    """
    bits = np.unpackbits(np.asarray(packed, np.uint8), axis=1, bitorder="little").astype(np.int64)
    out, start = [], 0
    for b in nbits:
        out.append((bits[:, start : start + b] << np.arange(b)).sum(1))
        start += b
    return np.stack(out, 1)


def squared_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]


def nearest(distances, n: int, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Index and value of each row's smallest distance, for ``n`` rows, ``chunk`` rows at a time.

    ``distances(rows: slice) -> (len(rows), K)`` computes one block, so the (n, K) table never
    exists whole (1M items × 4096 codes would be 16 GB).
    """
    codes, best = np.zeros(n, np.int64), np.zeros(n, np.float32)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        block = distances(rows)
        codes[rows] = block.argmin(1)
        best[rows] = block[np.arange(len(block)), codes[rows]]
    return codes, best


def nearest_code(rows_of, book: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest row of ``book`` (K, w) for ``n`` vectors given block by block by ``rows_of(rows: slice)``:
    NumPy for a small table, faiss (several times faster) above :data:`FAISS_CELLS`."""
    if n * len(book) <= FAISS_CELLS:
        return nearest(lambda rows: squared_distances(rows_of(rows), book), n)
    return nearest_faiss(rows_of, book, n)


def nearest_faiss(rows_of, book: np.ndarray, n: int, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest` by a faiss exact L2 search (blocked BLAS on every core), for large tables.

    ``rows_of(rows: slice) -> (len(rows), w)`` gives the vectors of a block; ``book`` (K, w).
    """
    import faiss

    index = faiss.IndexFlatL2(book.shape[1])
    index.add(np.ascontiguousarray(book, np.float32))
    codes, best = np.zeros(n, np.int64), np.zeros(n, np.float32)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        dist, hit = index.search(np.ascontiguousarray(rows_of(rows), np.float32), 1)
        codes[rows], best[rows] = hit[:, 0], dist[:, 0]
    return codes, best


def top_inner_product(x: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of the ``k`` base vectors with the largest inner product with each row of ``x``
    (unordered within a row): exact, in row blocks of a ~64 MB table."""
    chunk = max(1, (1 << 24) // max(len(base), 1))
    top = np.zeros((len(x), k), np.int64)
    for start in range(0, len(x), chunk):
        sims = x[start : start + chunk] @ base.T
        top[start : start + chunk] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return top


def ivf_index(vectors: np.ndarray, inner_product: bool, lists: int | None = None, seed: int = 0):
    """A trained faiss ``IndexIVFFlat`` holding ``vectors`` (4·√n lists unless given, trained on
    at most 64 points per list)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    n, d = vectors.shape
    lists = lists or max(1, int(4 * np.sqrt(n)))
    metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    coarse = faiss.IndexFlatIP(d) if inner_product else faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(coarse, d, lists, metric)
    index.cp.seed, index.cp.max_points_per_centroid = seed, 64
    train = vectors if n <= 64 * lists else vectors[np.random.default_rng(seed).choice(n, 64 * lists, False)]
    index.train(train)
    index.add(vectors)  # (faiss's Python wrapper keeps ``coarse`` alive as long as ``index``)
    return index


_WARNED: set = set()


def _warn_once(message: str) -> None:
    """A warning shown once per process (the ablations would repeat it for every variant)."""
    if message not in _WARNED:
        _WARNED.add(message)
        config.warn(message)


def fit_opq(r: np.ndarray, m: int, size: int, seed: int, sample: int = 262_144):
    """faiss OPQ rotation + PQ on residuals → (rotation (D,D), pq centroids (M, size, D/M)).

    Trained on at most ``sample`` residuals (a seeded subset; faiss samples further inside).
    """
    import faiss

    if len(r) > sample:
        r = r[np.sort(np.random.default_rng(seed).choice(len(r), sample, replace=False))]
    width = -(-r.shape[1] // m) * m  # pad to a multiple of M
    z = np.ascontiguousarray(np.pad(r, ((0, 0), (0, width - r.shape[1]))), np.float32)
    nbits = int(np.log2(size))
    if len(z) > width:
        opq = faiss.OPQMatrix(width, m)
        opq.pq = train_pq = faiss.ProductQuantizer(width, m, nbits)  # OPQ's own PQ would want 256 codes
        train_pq.cp.min_points_per_centroid, train_pq.cp.seed = 1, seed
        opq.train(z)
        rotation = faiss.vector_to_array(opq.A).reshape(width, width)
    else:  # faiss OPQ fails when there are fewer vectors than dimensions: plain PQ then
        _warn_once(f"OPQ needs more SKUs ({len(z)}) than dimensions ({width}): the tail is plain PQ "
                   f"(no rotation)")
        rotation = np.eye(width, dtype=np.float32)
    pq = faiss.ProductQuantizer(width, m, nbits)
    pq.cp.min_points_per_centroid, pq.cp.seed = 1, seed
    pq.train(np.ascontiguousarray(z @ rotation.T, np.float32))
    centroids = faiss.vector_to_array(pq.centroids).reshape(m, size, width // m)
    return rotation.astype(np.float32), centroids.astype(np.float32)
