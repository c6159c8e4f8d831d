"""k-means and the faiss helpers every quantizer here shares (VRQ, its baselines, the RQ-VAE start)."""

from __future__ import annotations

import numpy as np


def one_thread():
    """faiss training with one OpenMP thread: multithreaded OPQ is not bit-reproducible (threadpoolctl
    sets faiss's and torch's OpenMP pools; BLAS is left alone, as faiss.omp_set_num_threads did)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 25) -> np.ndarray:
    """faiss k-means centroids (k, d), started from a k-means++ seeding.

    faiss starts from k random points, which can leave two centroids in one tight cluster and none
    in another; k-means++ (Arthur & Vassilvitskii 2007) spreads the start.
    """
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, min_points_per_centroid=1,
                      max_points_per_centroid=1 << 20)
    km.train(x, init_centroids=kmeans_plus_plus(x, k, np.random.default_rng(seed)))
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
