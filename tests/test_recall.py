"""Visual retrieval: faiss search against a brute-force numpy oracle (a SKU scores its best view)."""

import numpy as np
import pytest
from conftest import fake_catalogue

from ovkit import recall


@pytest.fixture(scope="module")
def world():
    return fake_catalogue(n_models=12, colourways=3, query_views=4)


def test_search_equals_best_view_per_sku_by_brute_force(world):
    cat, emb = world
    views = cat.catalog_views()
    queries = emb[cat.views[cat.views["kind"] == "query"]["view_id"].to_numpy()[:20]]
    items, scores = recall.VisualRecall(cat, emb).search(queries, 5)
    sims = queries @ emb[views["view_id"].to_numpy()].T  # (Q, catalogue views)
    best = np.full((len(queries), len(cat.items)), -np.inf)
    for column, item in enumerate(views["item_id"].to_numpy()):
        best[:, item] = np.maximum(best[:, item], sims[:, column])
    expected = np.argsort(-best, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(best, expected, 1), rtol=1e-5)


def test_item_vectors_must_cover_every_sku(world):
    cat, emb = world
    with pytest.raises(ValueError, match="item vectors for"):
        recall.VisualRecall(cat, emb, item_vectors=np.zeros((len(cat.items) - 1, emb.shape[1]), np.float32))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_every_index_kind_finds_a_vector_itself(kind):
    vectors = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = recall.recall_index(vectors, kind)
    _, hits = index.search(vectors[:50], 1)
    assert (hits[:, 0] == np.arange(50)).mean() >= 0.9


def test_l2_normalise_gives_unit_rows_and_leaves_zero_rows_at_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], np.float32)
    out = recall.l2_normalise(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    assert out.dtype == np.float32
