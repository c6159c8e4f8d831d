"""k-means helpers: faiss's bit packing undone, k-means++ seeding, seeded k-means."""

import faiss
import numpy as np
import pytest

from ovkit import kmeans


@pytest.mark.parametrize("nbits,m", [(5, 3), (3, 4), (8, 2), (6, 5)])
def test_unpack_matches_faiss_bit_packing(nbits, m):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 4 * m)).astype(np.float32)
    pq = faiss.ProductQuantizer(4 * m, m, nbits)
    pq.cp.min_points_per_centroid = 1
    pq.train(x)
    packed = pq.compute_codes(x)
    assert packed.shape[1] == -(-nbits * m // 8)  # packed: codes share bytes unless 8 bits wide
    codes = kmeans.unpack_codes(packed, [nbits] * m)
    assert codes.max() < 2**nbits
    centroids = faiss.vector_to_array(pq.centroids).reshape(m, 2**nbits, 4)
    ours = np.concatenate([centroids[j][codes[:, j]] for j in range(m)], 1)
    np.testing.assert_allclose(ours, pq.decode(packed), atol=1e-6)


def test_kmeans_plus_plus_picks_distinct_data_points_spread_over_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, size=(50, 2)) for c in centres]).astype(np.float32)
    seeds = kmeans.kmeans_plus_plus(x, 4, np.random.default_rng(1))
    assert all((x == s).all(1).any() for s in seeds)  # each seed is a data point
    nearest = np.argmin(((seeds[:, None] - centres[None]) ** 2).sum(-1), 1)
    assert sorted(nearest) == [0, 1, 2, 3]  # one seed in each cluster
    a, b = kmeans.kmeans(x, 4, seed=3), kmeans.kmeans(x, 4, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.sort(np.round(a).astype(int), axis=0).tolist() == np.sort(centres.astype(int), axis=0).tolist()
