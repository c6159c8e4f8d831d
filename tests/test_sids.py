"""Comparing semantic IDs: the baselines against faiss, the RQ-VAE module, the SID report's metrics."""

import types

import faiss
import numpy as np
import pandas as pd
import pytest
import torch

from ovkit import sids, vrq

SMALL = {"levels": (8, 8), "opq_codes": 2, "opq_size": 8}  # a VRQ small enough for the fake catalogue


def test_residual_kmeans_matches_faiss_residual_quantizer():
    """Plain residual k-means (our VRQ with every extra off) vs faiss at the same budget: MSE within 5%."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32)) * 3
    x = (centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 32))).astype(np.float32)
    warm = np.ones(len(x), bool)
    ours = sids.rq_kmeans("rqkmeans", x, warm, (16, 16, 16))
    theirs = sids.faiss_rq(x, warm, (16, 16, 16), beam=1)
    assert ours.mse == pytest.approx(theirs.mse, rel=0.05)
    # and the reported MSE is what decoding the codes gives
    rq = faiss.ResidualQuantizer(32, 3, 4)
    rq.max_beam_size = 1
    rq.train(x)
    assert theirs.mse == pytest.approx(float(((rq.decode(rq.compute_codes(x)) - x) ** 2).sum(1).mean()),
                                       rel=0.05)


def test_faiss_rq_codes_unpack_for_narrow_codebooks():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    codes = sids.faiss_rq(x, np.ones(400, bool), (8, 8, 8)).items  # 3 bits each: 9 bits in 2 bytes
    assert codes.shape == (400, 3) and codes.max() < 8 and len(np.unique(codes[:, 2])) > 1


def test_metrics_on_a_hand_computed_example():
    cat = types.SimpleNamespace(items=pd.DataFrame({
        "fine_type": ["chair", "chair", "table", "table"], "model_id": [0, 0, 1, 2]}))
    items = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    codes = sids.Codes("toy", items, (2, 4), None, 0.5, "aligned")
    queries = np.array([[0, 1], [0, 0], [1, 1], [0, 0]])
    truth = np.array([1, 1, 2, 3])
    m = sids.sid_metrics(codes, cat, queries, truth)
    assert m["icr"] == 0.5 and m["collision_rate"] == 0.25
    assert m["consistency@1"] == 0.75 and m["consistency@2"] == 0.25
    assert m["cur@1"] == 1.0 and m["cur@2"] == 0.5
    assert m["purity@1"] == 1.0 and m["entropy@1"] == 1.0
    assert m["chance@1"] == 0.5 and m["kappa@1"] == 0.5  # (0.75 − 0.5) / (1 − 0.5)
    assert m["colour_separation"] == 1.0  # the only siblings (items 0 and 1) have distinct SIDs
    assert m["candidates@1"] == 2.0 and m["candidates@2"] == pytest.approx((1 + 1 + 0 + 1) / 4)


def test_consistency_hits_are_the_per_photo_terms_of_consistency(fake_views):
    cat, emb = fake_views
    ids = vrq.build_ids(cat, emb, vrq.VRQConfig.from_overrides(SMALL))
    codes = sids.Codes("vrq", ids["raw"], tuple(ids["sizes"]), ids["quantizer"].encode, 0.0, "aligned")
    views = cat.views
    photos = views[(views["kind"] == "query") & (views["split"] == "test")]["view_id"].to_numpy()
    table = sids.report([codes], cat, {"aligned": emb}, photos)
    for level in (1, 2):
        hits = sids.consistency_hits(codes, cat, {"aligned": emb}, photos, level)
        assert hits.shape == photos.shape
        assert hits.mean() == pytest.approx(table.loc["vrq", f"consistency@{level}"])


def test_rq_vae_module_quantizes_residually_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    model = sids.RQVAE(dim=8, budget=(4, 4), latent=3, hidden=16)
    x = torch.randn(32, 8)
    model.init_codebooks(x, seed=0)
    codes, zq, loss = model.quantize(model.encoder(x))
    assert codes.shape == (32, 2) and int(codes.max()) < 4 and loss.item() >= 0
    manual = model.books[0][codes[:, 0]] + model.books[1][codes[:, 1]]
    torch.testing.assert_close(zq, manual)  # the quantized latent is the sum of one codeword per level
    recon, _, vq_loss, z = model(x)
    ((recon - x) ** 2).sum().backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0  # the decoder's loss reaches the encoder
    np.testing.assert_array_equal(model.encode(x.numpy()), codes.numpy())


@pytest.mark.slow
def test_rq_vae_baseline_learns_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    warm = np.ones(300, bool)
    short = sids.rq_vae(x, warm, (8, 8), steps=5, latent=4, hidden=32, progress=False)
    long = sids.rq_vae(x, warm, (8, 8), steps=300, latent=4, hidden=32, progress=False)
    again = sids.rq_vae(x, warm, (8, 8), steps=300, latent=4, hidden=32, progress=False)
    assert long.mse < short.mse
    np.testing.assert_array_equal(long.items, again.items)
    assert long.items.shape == (300, 2) and long.name == "rqvae"
