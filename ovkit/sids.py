"""Comparing semantic IDs (notebook 02): any method's codes, the baselines VRQ is measured
against (RQ-KMeans, OPQ, faiss RQ, RQ-VAE) at the same budget, and the SID quality report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import config
from .kmeans import fit_opq, kmeans, one_thread, squared_distances, unpack_codes
from .vrq import SemanticIDs, SemanticQuantizer, VRQConfig, fit

# --------------------------------------------------------------------------- baselines


@dataclass
class Codes:
    """One method's SIDs for the report: item codes, how queries are encoded, reconstruction error."""

    name: str
    items: np.ndarray  # (n_items, L) before any disambiguation
    sizes: tuple
    encode: object  # callable: (N, d) query embeddings → (N, L) codes
    mse: float  # mean ‖x − x̂‖² over warm items (inputs are unit vectors: the energy lost)
    space: str  # which view embeddings the queries are encoded from ("aligned" or "frozen")
    quantizer: SemanticQuantizer | None = None  # for the kit's own quantizers


def _mse(x, recon) -> float:
    return float(((x - recon) ** 2).sum(1).mean())


def vrq_codes(ids: SemanticIDs, catalogue, name: str = "vrq") -> Codes:
    """The VRQ SIDs as report input (raw codes: the report measures collisions before dedup)."""
    warm = ~catalogue.items["cold"].to_numpy().astype(bool)
    recon = ids.quantizer.decode(ids.raw[warm])
    return Codes(name, ids.raw, tuple(ids.config.budget), ids.encode, _mse(ids.item_vectors[warm], recon),
                 "aligned", ids.quantizer)


def rq_kmeans(name: str, vectors: np.ndarray, warm: np.ndarray, budget, seed: int = 0, space="aligned"):
    """Plain residual k-means (no fusion, no category, no consensus, no OPQ) over the whole budget."""
    cfg = VRQConfig(levels=tuple(budget), opq_codes=0, alpha=0.0, consensus_levels=0, seed=seed)
    q = fit(vectors[warm], np.zeros(int(warm.sum()), np.int64), vectors[:0], np.zeros(0, int), cfg, 0)
    items = q.encode(vectors, np.zeros(len(vectors), np.int64))
    return Codes(name, items, tuple(budget), q.encode, _mse(vectors[warm], q.decode(items[warm])), space, q)


def opq_only(vectors: np.ndarray, warm: np.ndarray, budget, seed: int = 0) -> Codes:
    """OPQ + PQ alone: as many codes as the budget, each as wide as its first codebook; no hierarchy."""
    cfg = VRQConfig(levels=(), opq_codes=len(budget), opq_size=budget[0], alpha=0.0, consensus_levels=0,
                    seed=seed)
    q = SemanticQuantizer(cfg, vectors.shape[1], 0)
    with one_thread():
        q.rotation, q.pq = fit_opq(vectors[warm], cfg.opq_codes, cfg.opq_size, seed)
    items = q.encode(vectors)
    return Codes("opq", items, (budget[0],) * len(budget), q.encode,
                 _mse(vectors[warm], q.decode(items[warm])), "aligned")


def faiss_rq(vectors: np.ndarray, warm: np.ndarray, budget, beam: int = 5) -> Codes:
    """faiss ``ResidualQuantizer`` (beam-search encoding) at the same budget; codes unpacked from bits."""
    import faiss

    nbits = [int(np.log2(s)) for s in budget]
    if len(set(nbits)) != 1:
        raise ValueError(f"faiss_rq here takes equal codebook sizes, got {list(budget)}")
    rq = faiss.ResidualQuantizer(vectors.shape[1], len(nbits), nbits[0])
    rq.max_beam_size = beam
    rq.cp.min_points_per_centroid = 1
    if warm.sum() <= vectors.shape[1]:  # its PCA initialisation needs more vectors than dimensions
        rq.train_type = faiss.ResidualQuantizer.Train_default
    with one_thread():
        rq.train(np.ascontiguousarray(vectors[warm], np.float32))
    books = faiss.vector_to_array(rq.codebooks).reshape(-1, vectors.shape[1])
    offsets = np.concatenate([[0], np.cumsum(budget)[:-1]])

    def encode(x):
        return unpack_codes(rq.compute_codes(np.ascontiguousarray(x, np.float32)), nbits)

    items = encode(vectors)
    recon = books[items[warm] + offsets].sum(1)
    return Codes("faiss_rq", items, tuple(budget), encode, _mse(vectors[warm], recon), "aligned")


class RQVAE(nn.Module):
    """A small RQ-VAE (Lee et al. 2022; TIGER's tokenizer): MLP encoder → residual VQ → MLP decoder."""

    def __init__(self, dim: int, budget, latent: int = 64, hidden: int = 256, beta: float = 0.25):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.books = nn.ParameterList([nn.Parameter(torch.zeros(size, latent)) for size in budget])
        self.beta = beta  # commitment weight

    def quantize(self, z):
        """Residual VQ of latents (B, latent) → codes (B, L), quantized latents, VQ loss (codebook +
        β · commitment)."""
        r, total, codes, loss = z, torch.zeros_like(z), [], z.new_zeros(())
        for book in self.books:
            c = torch.cdist(r, book).argmin(1)
            chosen = book[c]
            codebook_loss = ((r.detach() - chosen) ** 2).sum(1).mean()
            loss = loss + codebook_loss + self.beta * ((r - chosen.detach()) ** 2).sum(1).mean()
            codes.append(c)
            total = total + chosen
            r = r - chosen.detach()
        return torch.stack(codes, 1), total, loss

    def forward(self, x):
        """Reconstruction (straight-through estimator past the quantizer), codes, VQ loss, latents."""
        z = self.encoder(x)
        codes, zq, vq_loss = self.quantize(z)
        return self.decoder(z + (zq - z).detach()), codes, vq_loss, z

    @torch.no_grad()
    def init_codebooks(self, x, seed: int) -> None:
        """Codebooks from k-means of the first encoder outputs, level by level (against collapse)."""
        with one_thread():
            r = self.encoder(x).numpy()
            for level, book in enumerate(self.books):
                book.data = torch.from_numpy(kmeans(r, len(book), seed + level))
                r = r - book.data.numpy()[squared_distances(r, book.data.numpy()).argmin(1)]

    @torch.no_grad()
    def reset_dead_codes(self, z, usage: list) -> None:
        """Codes unused since the last reset → random residuals of this batch (``usage`` is cleared)."""
        r = z.detach()
        for level, book in enumerate(self.books):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if len(dead):
                book[dead] = r[torch.randint(len(r), (len(dead),))]
            r = r - book[torch.cdist(r, book).argmin(1)]
            usage[level].zero_()

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        """(N, dim) vectors → (N, L) codes."""
        return self.quantize(self.encoder(torch.from_numpy(np.ascontiguousarray(x, np.float32))))[0].numpy()


def rq_vae(vectors: np.ndarray, warm: np.ndarray, budget, steps: int = 1500, latent: int = 64,
           hidden: int = 256, beta: float = 0.25, seed: int = 0, progress: bool = True) -> Codes:
    """Train an :class:`RQVAE` on the warm item vectors and return its codes.

    Batches of 256; every 100 steps a code unused since the last check is reset to a random
    residual of the current batch (against codebook collapse).
    """
    with config.one_torch_thread():  # a model this small runs faster on one thread than on two
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = RQVAE(vectors.shape[1], budget, latent, hidden, beta)
        train = torch.from_numpy(np.ascontiguousarray(vectors[warm], np.float32))
        model.init_codebooks(train, seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        usage = [torch.zeros(s) for s in budget]
        for step in config.progress(range(1, steps + 1), progress, desc="RQ-VAE", unit="step"):
            x = train[torch.from_numpy(rng.choice(len(train), min(256, len(train)), replace=False))]
            recon, codes, vq_loss, z = model(x)
            loss = ((recon - x) ** 2).sum(1).mean() + vq_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            for level, u in enumerate(usage):
                u += torch.bincount(codes[:, level], minlength=len(u)).float()
            if step % 100 == 0:
                model.reset_dead_codes(z, usage)
        items = model.encode(vectors)
        with torch.no_grad():
            recon = model.decoder(model.quantize(model.encoder(train))[1]).numpy()
    return Codes("rqvae", items, tuple(budget), model.encode, _mse(vectors[warm], recon), "aligned")


# --------------------------------------------------------------------------- the report


def sid_metrics(codes: Codes, catalogue, query_codes: np.ndarray, query_items: np.ndarray) -> dict:
    """SID quality of one method.

    Args:
        codes: the method's SIDs (before disambiguation) and reconstruction error.
        query_codes: (Q, L) codes of test query photos, encoded by the method from the image alone.
        query_items: (Q,) the SKU each photo shows.
    """
    items, sizes = codes.items, codes.sizes
    n, levels = items.shape
    sid = pd.Series(["-".join(map(str, r)) for r in items])
    counts = sid.map(sid.value_counts())
    out = {"icr": float((counts == 1).mean()), "collision_rate": 1 - sid.nunique() / n, "mse": codes.mse}
    for level in range(1, levels + 1):
        same = (query_codes[:, :level] == items[query_items, :level]).all(1)
        out[f"consistency@{level}"] = float(same.mean())
        used = np.bincount(items[:, level - 1], minlength=sizes[level - 1])
        out[f"cur@{level}"] = float((used > 0).mean())
        p = used[used > 0] / n
        out[f"entropy@{level}"] = float(-(p * np.log2(p)).sum())
    for level in (1, 2):
        if level <= levels:
            prefix = pd.Series(["-".join(map(str, r)) for r in items[:, :level]])
            size_of = prefix.value_counts()
            q_prefix = ["-".join(map(str, r)) for r in query_codes[:, :level]]
            out[f"candidates@{level}"] = float(np.mean([size_of.get(p, 0) for p in q_prefix]))
    first = items[:, 0]
    types = catalogue.items["fine_type"].astype(str).to_numpy() if "fine_type" in catalogue.items else \
        catalogue.items["category"].astype(str).to_numpy()
    table = pd.crosstab(first, types)
    out["purity@1"] = float(table.max(axis=1).sum() / n)
    share = np.bincount(first) / n
    out["chance@1"] = float((share**2).sum())
    # consistency above chance (Cohen's-kappa style): a few giant level-1 codes buy raw consistency
    out["kappa@1"] = (out["consistency@1"] - out["chance@1"]) / (1 - out["chance@1"])
    within = table.div(table.sum(axis=0), axis=1)  # P(code | type)
    out["type_chance@1"] = float(((within**2).sum(axis=0) * table.sum(axis=0) / n).sum())
    models = catalogue.items["model_id"].to_numpy()
    siblings = pd.Series(models).map(pd.Series(models).value_counts()).to_numpy() > 1
    distinct = pd.DataFrame({"m": models, "s": sid}).groupby(["m", "s"])["s"].transform("size") == 1
    out["colour_separation"] = float(distinct[siblings].mean()) if siblings.any() else float("nan")
    return out


def consistency_hits(codes: Codes, catalogue, embeddings: dict, query_view_ids, level: int = 1) -> np.ndarray:
    """Per query photo: 1.0 if the first ``level`` codes encoded from the photo alone equal its SKU's
    (the per-photo terms of ``consistency@level``, for paired confidence intervals)."""
    query_view_ids = np.asarray(query_view_ids)
    truth = catalogue.views["item_id"].to_numpy()[query_view_ids]
    query_codes = codes.encode(embeddings[codes.space][query_view_ids])
    return (query_codes[:, :level] == codes.items[truth, :level]).all(1).astype(float)


def report(methods: list[Codes], catalogue, embeddings: dict, query_view_ids) -> pd.DataFrame:
    """The SID quality table: one row per method (see :func:`sid_metrics`)."""
    query_view_ids = np.asarray(query_view_ids)
    truth = catalogue.views["item_id"].to_numpy()[query_view_ids]
    rows = {}
    for m in methods:
        query_codes = m.encode(embeddings[m.space][query_view_ids])
        rows[m.name] = sid_metrics(m, catalogue, query_codes, truth)
    return pd.DataFrame(rows).T
