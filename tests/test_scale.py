"""Shop scale: the sparse trie against a dense oracle, the top-M output prior against the exact one,
VRQ's block-wise pieces against their dense formulas, disambiguation past a full prefix, approximate
search against exact search, the synthetic catalogue's structure."""

import numpy as np
import pytest
import torch
from test_gen import random_codes, tiny_model, tiny_queries

from ovkit import config, gen, kmeans, mca, recall, scale, vrq


@pytest.fixture(autouse=True)
def one_thread():
    with config.one_torch_thread():
        yield


def dense_children(codes, sizes):
    """The dense child tables the trie used to keep: dict-built, independent of the CSR code."""
    tables = []
    for level, size in enumerate(sizes):
        prefixes = sorted({tuple(c[:level]) for c in codes.tolist()})
        nexts = sorted({tuple(c[: level + 1]) for c in codes.tolist()})
        node, child = {p: i for i, p in enumerate(prefixes)}, {p: i for i, p in enumerate(nexts)}
        table = np.full((len(prefixes), size), -1)
        for p in nexts:
            table[node[p[:-1]], p[-1]] = child[p]
        tables.append(table)
    return tables


@pytest.mark.parametrize("n,sizes", [(60, (4, 3, 5)), (300, (8, 16, 4, 4)), (7, (2, 2, 2))])
def test_sparse_trie_equals_the_dense_trie(n, sizes):
    codes, sizes = random_codes(n, sizes, seed=n)
    trie = gen.Trie(codes, sizes)
    for level, table in enumerate(dense_children(codes, sizes)):
        assert len(trie.indptr[level]) - 1 == len(table)
        np.testing.assert_array_equal(trie.children(level, np.arange(len(table))), table)
        assert trie.indptr[level].dtype == np.int32 and trie.code[level].dtype == np.int32
    model = gen.OneVision(gen.GenConfig(d_model=8, heads=2), trie, np.eye(n, 8, dtype=np.float32), 1)
    nodes = torch.tensor([0, 0])
    np.testing.assert_array_equal(model.child_rows(0, nodes).numpy(), dense_children(codes, sizes)[0][[0, 0]])
    assert trie.contains(codes).all() and not trie.contains(np.full((1, len(sizes)), -1)).any()


def test_top_prior_with_every_sku_equals_the_exact_prior():
    model = tiny_model()
    g = torch.nn.functional.normalize(torch.as_tensor(tiny_queries().global_), dim=-1)
    exact = gen.DensePrior.build(g @ model.item_vectors.T, model.node_of)
    top = model.top_prior(g, len(model.item_vectors))
    rows = torch.arange(len(g)).repeat_interleave(4)
    for level, table in enumerate(exact.levels):
        nodes = torch.arange(table.shape[1])[None].expand(len(rows), -1)
        torch.testing.assert_close(top.at(level, rows, nodes), exact.at(level, rows, nodes))


def test_top_prior_is_exact_where_the_best_skus_are_and_an_upper_bound_elsewhere():
    model = tiny_model()
    g = torch.nn.functional.normalize(torch.as_tensor(tiny_queries().global_), dim=-1)
    exact = gen.DensePrior.build(g @ model.item_vectors.T, model.node_of)
    top = model.top_prior(g, 5)
    best = torch.topk(g @ model.item_vectors.T, 5).indices
    rows = torch.arange(len(g))
    for level, table in enumerate(exact.levels):
        nodes = torch.arange(table.shape[1])[None].expand(len(g), -1)
        got, want = top.at(level, rows, nodes), exact.at(level, rows, nodes)
        seen = torch.zeros_like(want, dtype=torch.bool)
        seen[rows[:, None], model.node_of[level][best]] = True
        torch.testing.assert_close(got[seen], want[seen])
        assert (got[~seen] >= want[~seen] - 1e-6).all()  # the M-th best bounds every unseen SKU
    q = tiny_queries()
    small = tiny_model(prior_neighbours=5)
    items, scores = gen.beam_search(small, q, k=5, beam=8)
    assert (items >= 0).all() and small.trie.contains(small.trie.codes[items]).all()
    assert np.array_equal(gen.beam_search(tiny_model(prior_neighbours=60), q, k=5, beam=8)[0],
                          gen.beam_search(tiny_model(), q, k=5, beam=8)[0])  # M = #SKUs: the exact path


def test_prior_ivf_index_above_its_threshold_finds_the_exact_top():
    model = tiny_model(prior_neighbours=10, prior_exact_max=20)
    g = torch.nn.functional.normalize(torch.as_tensor(tiny_queries().global_), dim=-1)
    assert type(model.prior_index()).__name__ == "IndexIVFFlat"
    top = model.top_prior(g, 10)
    exact = torch.topk(g @ model.item_vectors.T, 10).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(top.hits, exact, strict=True)]
    assert np.mean(overlap) >= 0.8


def test_prior_ivf_finds_the_exact_top_m_on_a_clustered_catalogue():
    """The IVF's recall@M where M is a large share of the catalogue (as 4096 of 60k SKUs): 4·√n lists
    probed for 2·M SKUs found 84% here (77% at 60k); at least 95% is asked."""
    n, m = 8000, 512
    cat = scale.synthetic_catalogue(n, dim=64)
    codes = np.stack(np.unravel_index(np.arange(n), (20, 20, 20)), 1)
    model = gen.OneVision(gen.GenConfig(d_model=16, heads=2, prior_neighbours=m, prior_exact_max=n // 4),
                          gen.Trie(codes, (20, 20, 20)), cat.items, 1)
    photos, _ = cat.queries(64)
    assert type(model.prior_index()).__name__ == "IndexIVFFlat"
    assert model.prior_recall(torch.from_numpy(photos)) >= 0.95
    flat = gen.OneVision(gen.GenConfig(d_model=16, heads=2, prior_neighbours=m), model.trie, cat.items, 1)
    assert type(flat.prior_index()).__name__ == "IndexFlatIP" and flat.prior_recall(photos) == 1.0  # exact


def dense_vote(q, level, r, s, view_r, view_s, owner, n_items):
    """The vote as it used to be computed: a dense items × codes count table (float64)."""
    own = q._level_distances(level, r, s)
    counts = np.zeros((n_items, len(q.codebooks[level])))
    np.add.at(counts, (owner, q._level_distances(level, view_r, view_s).argmin(1)), 1.0)
    counts[np.arange(n_items), own.argmin(1)] += 1.5
    return counts.argmax(1)


def test_sparse_vote_and_blocked_search_equal_the_dense_formulas():
    cat = scale.synthetic_catalogue(400, dim=16, views=3, n_types=4, chunk=64)
    cfg = vrq.VRQConfig(levels=(8, 8), opq_codes=1, opq_size=8)
    q = vrq.fit(cat.items, cat.types, cat.views, cat.owner, cfg, cat.n_types)
    s, vs = q.category_part(cat.types, cat.items), q.view_part(cat.views, cat.n_types)
    np.testing.assert_array_equal(q._vote(0, cat.items, s, cat.views, vs, cat.owner, 400),
                                  dense_vote(q, 0, cat.items, s, cat.views, vs, cat.owner, 400))
    dist = q._level_distances(1, cat.items, s)
    codes, best = kmeans.nearest(lambda rows: q._level_distances(1, cat.items[rows], s[rows]), 400, chunk=7)
    np.testing.assert_array_equal(codes, dist.argmin(1))
    book = q.codebooks[1][:, :16]
    faiss_codes, faiss_best = kmeans.nearest_faiss(lambda rows: cat.items[rows], book, 400, chunk=9)
    np.testing.assert_array_equal(faiss_codes, dist.argmin(1))
    np.testing.assert_allclose(faiss_best, dist.min(1), atol=1e-4)


@pytest.mark.slow
def test_above_type_knn_max_a_linear_classifier_predicts_types_as_well_as_the_knn(tmp_path):
    cat = scale.synthetic_catalogue(3000, dim=32, n_types=8)
    photos, truth = cat.queries(500)
    accuracy = {}
    for knn_max in (10**9, 1000):
        cfg = vrq.VRQConfig(levels=(8, 8), opq_codes=0, type_knn_max=knn_max)
        q = vrq.fit(cat.items, cat.types, cat.views, cat.owner, cfg, cat.n_types)
        probs = q.predict_types(photos)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        accuracy[knn_max] = (probs.argmax(1) == cat.types[truth]).mean()
        assert len(q.type_weights) == (8 if knn_max == 1000 else 0)
        q.save(tmp_path / "q.npz")
        loaded = vrq.SemanticQuantizer.load(tmp_path / "q.npz", cfg, 8)
        np.testing.assert_array_equal(loaded.predict_types(photos), probs)
    assert accuracy[1000] >= accuracy[10**9] - 0.05 and accuracy[1000] > 0.8


def test_kmeans_trains_on_a_sample_when_asked():
    x = scale.synthetic_catalogue(3000, dim=8, n_types=4).items
    a = kmeans.kmeans(x, 16, seed=1, sample=500)
    assert a.shape == (16, 8) and np.array_equal(a, kmeans.kmeans(x, 16, seed=1, sample=500))
    assert not np.array_equal(a, kmeans.kmeans(x, 16, seed=1))


def test_a_prefix_with_more_near_duplicates_than_codes_gets_an_appended_token():
    codes = np.array([[0, 1]] * 5 + [[1, 0]])
    dist = np.tile(np.array([[0.0, 0.1]]), (6, 1))
    out, moved, appended = vrq.disambiguate(codes, dist, "reassign")
    assert out.shape == (6, 3) and len({tuple(r) for r in out.tolist()}) == 6
    assert sorted(out[:5, 1].tolist()) == [0, 1, 1, 1, 1]  # both last codes used before appending
    assert appended.sum() == 3 and (out[~appended, 2] == 0).all()
    assert sorted(out[appended, 2].tolist()) == [1, 2, 3]


def test_vrq_never_fails_on_a_catalogue_of_identical_products():
    rng = np.random.default_rng(0)
    x = recall.l2_normalise(rng.normal(size=(100, 16)).astype(np.float32))
    x[:40] = x[0]  # 40 identical SKUs: one prefix, 16 last codes
    cfg = vrq.VRQConfig(levels=(8, 16), opq_codes=0, alpha=0.0, consensus_levels=0)
    out = vrq.quantize(x, np.zeros(100, int), 0, x[:0], np.zeros(0, int), np.zeros(100, bool), cfg)
    assert out["n_appended"] > 0 and out["unique_after_dedup"] == 1.0
    assert out["codes"].shape == (100, 3) and out["sizes"][:2] == [8, 16]
    gen.Trie(out["codes"], out["sizes"])  # a valid trie


@pytest.mark.slow
def test_onesearch_sized_budget_on_a_small_catalogue():
    cat = scale.synthetic_catalogue(4200, dim=16, n_types=8, chunk=512)
    cfg = vrq.VRQConfig(levels=(4096, 1024, 512), opq_codes=2, opq_size=256, kmeans_iters=2)
    with pytest.warns(UserWarning, match="fewer than 2 SKUs per code"):
        out = scale.quantize(cat, cfg)
    assert out["codes"].shape[0] == 4200 and len(np.unique(out["codes"], axis=0)) == 4200
    trie = gen.Trie(out["codes"], out["sizes"])
    assert trie.nbytes < 2**20


def test_cascade_recall_index_auto_switches_to_ivf_and_keeps_recall():
    cat = scale.synthetic_catalogue(6000, dim=32, n_types=16)
    flat = recall.recall_index(cat.items, "auto", exact_max=10_000)
    auto = recall.recall_index(cat.items, "auto", exact_max=1000)
    assert type(flat).__name__ == "IndexFlatIP" and type(auto).__name__ == "IndexIVFFlat"
    photos, _ = cat.queries(100)
    assert scale.recall_agreement(auto, flat, photos, 50) >= 0.9
    with pytest.raises(ValueError, match="'auto', 'flat', 'ivf' or 'hnsw'"):
        mca.MCAConfig.from_overrides({"index": "annoy"})


def test_synthetic_catalogue_has_types_products_and_near_duplicate_colourways():
    cat = scale.synthetic_catalogue(800, dim=64, views=2, colourways=4, chunk=128)
    assert cat.items.shape == (800, 64) and cat.views.shape == (1600, 64) and len(cat.owner) == 1600
    np.testing.assert_allclose(np.linalg.norm(cat.views, axis=1), 1, atol=1e-5)
    sims = cat.items @ cat.items.T
    product = np.arange(800) // 4
    sibling = sims[(product[:, None] == product[None]) & ~np.eye(800, dtype=bool)].mean()
    same_type = sims[(cat.types[:, None] == cat.types[None]) & (product[:, None] != product[None])].mean()
    assert sibling > 0.85 > same_type > sims[cat.types[:, None] != cat.types[None]].mean()
    assert (cat.types.reshape(-1, 4) == cat.types[::4, None]).all()  # colourways share the type
