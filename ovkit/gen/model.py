"""OneVision's network: the encoder–decoder transformer over query-photo, history and task tokens,
with its output prior and an incremental decoder for beam search (see the package docstring; the
SID trie is in :mod:`.trie`, the search over it in :mod:`.search`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from ..recall import l2_normalise
from .prior import DensePrior, TopPrior, ivf_prior_index, top_recall
from .trie import BOS, Trie, expand_children

# Training signal (kit choices, issue 28). What SFT learns from:
SFT_ON = {"clicks": "every logged click → the clicked SKU, orders weighted 1 + order_weight",
          "orders": "only ordered SKUs, each weight 1 (what the shopper bought, not what caught the eye)"}
# Which logged SKUs DPO prefers to which, within a session:
DPO_PAIRS = {"graded": "ordered ≻ clicked, not ordered ≻ shown, not clicked",
             "clicks": "clicked ≻ shown, not clicked (orders ignored)",
             "skip_above": "graded, but a SKU is rejected only if it was shown above the preferred one "
                           "(seen and passed over: the click-skip-above rule, less position bias)"}

# How a clicked SKU of the user's history enters the encoder (kit choice, issue 28):
HISTORY_ITEMS = {"sid": "the sum of its SID token embeddings (what the decoder emits)",
                 "attributes": "that plus embeddings of its product type, colour and creator: what the "
                               "clicks reveal about taste, what the cascade's hist_* features read"}
ATTRIBUTES = ("fine_type", "colour", "creator")  # the item columns of history_items="attributes"


@dataclass(frozen=True)
class GenConfig:
    """Generative model and training settings (kit choices)."""

    d_model: int = 128  # width of every token
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    dropout: float = 0.0  # (dropout cost a quarter of each CPU step and did not help validation)
    input_noise: float = 0.1  # Gaussian noise on image features in training (train photos are too clean)
    prior_scale: float = 20.0  # vision-aligned output: + scale · best cos(query, SKU) under a code; 0: off
    prior_neighbours: int = 4096  # the prior reads the query's top-M SKUs (faiss); M >= #SKUs: all of them
    prior_exact_max: int = 50_000  # those top-M come from exact search up to this many SKUs, faiss IVF above
    history: int = 8  # the user's last H clicked SKUs as encoder tokens
    history_items: str = "sid"  # how a clicked SKU enters the encoder (HISTORY_ITEMS)
    task_token: bool = True  # a token telling the model whether user context is present
    batch: int = 256
    lr: float = 1e-3  # pretraining learning rate (peak of a one-cycle schedule)
    sft_lr: float = 3e-4
    pretrain_steps: int = 400
    sft_steps: int = 200
    dpo_steps: int = 100
    order_weight: float = 3.0  # SFT weight of an ordered example is 1 + order_weight (clicks: 1)
    sft_on: str = "clicks"  # SFT examples: every logged click (orders weigh more) | orders only (SFT_ON)
    sft_replay: float = 0.8  # share of each SFT batch drawn from pretraining examples (keeps visual priors)
    dpo: str = "pairwise"  # pairwise (Rafailov et al.) or listwise (softmax over one chosen and its rejected)
    dpo_pairs: str = "graded"  # which logged SKUs DPO prefers to which (DPO_PAIRS)
    beta: float = 0.5  # DPO temperature
    dpo_lr: float = 3e-5
    dpo_nll: float = 1.0  # weight of the chosen item's NLL beside the DPO loss (keeps the likelihood up)
    beam: int = 20  # beam width at search time
    eval_every: int = 50  # steps between validation checks (curves; the best checkpoint is kept)
    seed: int = 0

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> GenConfig:
        return config.with_overrides(cls, overrides, "GEN")

    def validate(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"GEN d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.dpo not in ("pairwise", "listwise"):
            raise ValueError(f"GEN dpo must be 'pairwise' or 'listwise', got {self.dpo!r}")
        for name, known in (("sft_on", SFT_ON), ("dpo_pairs", DPO_PAIRS), ("history_items", HISTORY_ITEMS)):
            if getattr(self, name) not in known:
                raise ValueError(f"GEN {name} must be one of {', '.join(known)}, got {getattr(self, name)!r}")
        if not 0 <= self.sft_replay < 1:
            raise ValueError(f"GEN sft_replay must be in [0, 1), got {self.sft_replay}")
        for name in ("d_model", "heads", "batch", "beam", "history", "eval_every", "prior_neighbours"):
            if getattr(self, name) < 1:
                raise ValueError(f"GEN {name} must be >= 1, got {getattr(self, name)}")


# --------------------------------------------------------------------------- the model


@dataclass
class Queries:
    """A batch of queries: image features and user context (numpy or torch)."""

    global_: np.ndarray  # (B, D) global embedding of the query photo
    visual: np.ndarray  # (B, K, D) visual tokens
    history: np.ndarray  # (B, H) SKU ids of the user's last clicks, most recent last, -1 = none
    task: np.ndarray  # (B,) 0: image only (pretraining), 1: with user context

    def __len__(self):
        return len(self.global_)

    def take(self, rows) -> Queries:
        return Queries(*(np.asarray(a)[rows] for a in (self.global_, self.visual, self.history, self.task)))


def item_attributes(items) -> np.ndarray:
    """(n_items, len(ATTRIBUTES)) int64: each SKU's :data:`ATTRIBUTES` as ids into one shared
    vocabulary (column j's values are numbered after column j-1's), for ``history_items="attributes"``."""
    missing = [c for c in ATTRIBUTES if c not in items]
    if missing:
        raise ValueError(f"history_items='attributes' needs item columns {', '.join(missing)}; the items "
                         f"table has {', '.join(items.columns)}")
    table, offset = [], 0
    for column in ATTRIBUTES:
        values, ids = np.unique(items[column].astype(str).to_numpy(), return_inverse=True)
        table.append(ids + offset)
        offset += len(values)
    return np.stack(table, 1).astype(np.int64)


def make_queries(embeddings, tokens, view_ids, histories=None, history_len: int = 8, task=None) -> Queries:
    """Queries for ``view_ids``: their features, the last ``history_len`` SKUs of each history.

    ``histories``: one list of SKU ids per query (oldest first), or None for no user context.
    """
    view_ids = np.asarray(view_ids, np.int64)
    hist = np.full((len(view_ids), history_len), -1, np.int64)
    if histories is not None:
        if len(histories) != len(view_ids):
            raise ValueError(f"{len(histories)} histories for {len(view_ids)} queries")
        for row, items in enumerate(histories):
            last = list(items)[-history_len:]
            if last:
                hist[row, history_len - len(last):] = last
    if task is None:
        task = 0 if histories is None else 1
    return Queries(np.asarray(embeddings[view_ids], np.float32), np.asarray(tokens[view_ids], np.float32),
                   hist, np.full(len(view_ids), task, np.int64))


def pack_history(hist: torch.Tensor) -> torch.Tensor:
    """Histories (B, H) with each row's clicks moved to the right end, in order, padding (-1) first.

    Positions are counted from the right and padding columns every query lacks are dropped, so an
    unpacked row (padding between clicks) would get other positions alone than in a batch.
    """
    order = torch.argsort((hist >= 0).to(torch.int8), dim=1, stable=True)  # padding (0) before clicks
    return hist.gather(1, order)


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(b, T, d) → (b, h, T, d / h): the layout of multi-head attention."""
    b, t, _ = x.shape
    return x.view(b, t, h, -1).transpose(1, 2)


class _DecoderLayer(NamedTuple):
    """One decoder layer's (weight, bias) pairs, read once per search."""

    norm1: tuple
    self_in: tuple
    self_out: tuple
    norm2: tuple
    cross_q: tuple
    cross_out: tuple
    norm3: tuple
    ff1: tuple
    ff2: tuple
    eps: float


@dataclass
class DecoderCache:
    """Keys and values an incremental decoder keeps between levels (:meth:`OneVision.decode_step`)."""

    cross: list  # per layer (k, v), each (b, h, T, hd): the encoder memory's, computed once
    attend: torch.Tensor  # (b, 1, 1, T) True = a memory token to attend to (not padding)
    selves: list  # per layer (k, v), each (b, n, h, level, hd): the decoded positions of n beams
    weights: list  # per layer, its _DecoderLayer
    final_norm: tuple  # (weight, bias, eps) of the decoder's last LayerNorm

    def reorder(self, parent: torch.Tensor) -> None:
        """Keep beams ``parent`` (b, m): row j of each query continues its beam ``parent[:, j]``."""
        def pick(t):
            return t.gather(1, parent[:, :, None, None, None].expand(-1, -1, *t.shape[2:]))
        self.selves = [(pick(k), pick(v)) for k, v in self.selves]


@dataclass
class Memory:
    """What the encoder hands the decoder."""

    memory: torch.Tensor  # (B, T, d)
    mask: torch.Tensor  # (B, T) True = padding
    prior: DensePrior | TopPrior | None  # the vision-aligned output prior of the trie's nodes

    def rows(self, rows) -> Memory:
        prior = None if self.prior is None else self.prior.take(rows)
        return Memory(self.memory[rows], self.mask[rows], prior)


def _prior_query(g: torch.Tensor) -> np.ndarray:
    """``[g, 1]`` (B, D + 1): its inner product with :meth:`OneVision.prior_base` is cosine + bonus."""
    g = g.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.concatenate([g, np.ones((len(g), 1), np.float32)], 1))


class OneVision(nn.Module):
    """Encoder–decoder transformer over image tokens and user tokens that decodes SIDs.

    The SID table is a buffer of the model: a checkpoint carries the IDs it was trained on.
    """

    def __init__(self, cfg: GenConfig, trie: Trie, item_vectors: np.ndarray, n_visual: int,
                 item_attributes: np.ndarray | None = None):
        """``item_attributes`` (n_items, A) int: each SKU's attribute ids (:func:`item_attributes`),
        needed by ``history_items="attributes"`` only."""
        super().__init__()
        d, feature_dim = cfg.d_model, item_vectors.shape[1]
        self.cfg, self.trie = cfg, trie
        self.register_buffer("sid_tokens", torch.from_numpy(trie.tokens(np.arange(len(trie.codes)))))
        # the output prior scores a trie node by its best SKU: max cosine of the query with their vectors
        unit = l2_normalise(np.asarray(item_vectors, np.float32))
        self.register_buffer("item_vectors", torch.from_numpy(unit))
        self.register_buffer("node_of", torch.from_numpy(trie.path[:, 1:].T.copy()))  # (L, n_items)
        # the trie lives on the model's device (moved with it), not converted at every decoding step
        for level, (indptr, code) in enumerate(zip(trie.indptr, trie.code, strict=True)):
            self.register_buffer(f"trie_indptr{level}", torch.from_numpy(indptr), persistent=False)
            self.register_buffer(f"trie_code{level}", torch.from_numpy(code), persistent=False)
        self.register_buffer("trie_path", torch.from_numpy(trie.path), persistent=False)
        self.register_buffer("leaf_item", torch.from_numpy(trie.leaf_item), persistent=False)
        self._prior_index = None  # faiss index of the item vectors (+ bonus), built on first use
        # added to a SKU's cosine in the prior (see with_prior_bonus); not part of a checkpoint
        self.register_buffer("prior_bonus", torch.zeros(len(item_vectors)), persistent=False)
        self.prior_factor = 1.0  # multiplies the learned prior scales at serving (with_prior_factor)
        # learned per level in log space, so that SFT can flatten a level the shoppers do not follow
        start = float(np.log(max(cfg.prior_scale, 1e-6)))
        self.log_prior_scale = nn.Parameter(torch.full((trie.depth,), start),
                                            requires_grad=cfg.prior_scale > 0)
        self.token = nn.Embedding(trie.n_tokens, d)  # SID tokens: decoder input and history items
        self.global_in = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, d))
        self.visual_in = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, d))
        self.visual_pos = nn.Parameter(torch.randn(n_visual, d) * 0.02)
        self.history_pos = nn.Parameter(torch.randn(cfg.history, d) * 0.02)
        self.task = nn.Embedding(2, d)
        self.level_pos = nn.Parameter(torch.randn(trie.depth, d) * 0.02)
        layer = dict(d_model=d, nhead=cfg.heads, dim_feedforward=4 * d, dropout=cfg.dropout, batch_first=True,
                     norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), cfg.encoder_layers,
                                             nn.LayerNorm(d), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), cfg.decoder_layers,
                                             nn.LayerNorm(d))
        self.out = nn.ModuleList(nn.Linear(d, size) for size in trie.sizes)  # one head per level
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(trie.depth),
                             persistent=False)
        if cfg.history_items == "attributes":  # last, so the other weights start as without it
            if item_attributes is None or len(item_attributes) != len(trie.codes):
                raise ValueError("GEN history_items='attributes' needs each SKU's attributes: "
                                 "OneVision(..., item_attributes=gen.item_attributes(catalogue.items))")
            table = torch.tensor(np.asarray(item_attributes), dtype=torch.long)  # a copy, not a view
            self.register_buffer("item_attributes", table)  # in the checkpoint, like the SIDs
            self.attribute = nn.Embedding(int(table.max()) + 1, d)

    @property
    def device(self):
        return self.sid_tokens.device

    def with_item_vectors(self, vectors: np.ndarray) -> OneVision:
        """This model with its vision-aligned output prior scoring SKUs against other item vectors.

        E.g. catalogue-view-only vectors instead of the fused catalogue + training-photo vectors the
        model was trained with. The copy shares every weight and submodule with this model (training
        or moving one moves the other); only the ``item_vectors`` buffer is its own.

        Args:
            vectors: (n_items, D) one vector per SKU, in SKU order; normalised here.
        Returns:
            The copy; this model is untouched.
        """
        vectors = np.asarray(vectors)
        if vectors.shape != tuple(self.item_vectors.shape):
            raise ValueError(f"item vectors must have the shape of the model's buffer (n_items, d) = "
                             f"{tuple(self.item_vectors.shape)}, got {vectors.shape}")
        twin = self._twin()
        unit = l2_normalise(np.asarray(vectors, np.float32))
        twin.item_vectors = torch.from_numpy(unit).to(self.item_vectors.device)
        twin._prior_index = None
        return twin

    def with_prior_bonus(self, bonus: np.ndarray) -> OneVision:
        """This model with ``bonus`` (n_items,) added to each SKU's cosine in the output prior.

        The cold-SKU remedy of notebook 04: SKUs that were never a training target get no help
        from the decoder's learned scores, so their visual evidence can be made to count more.
        Shares every weight with this model, like :meth:`with_item_vectors`.
        """
        bonus = np.asarray(bonus, np.float32)
        if bonus.shape != (len(self.item_vectors),):
            raise ValueError(f"prior bonus must have one value per SKU ({len(self.item_vectors)}), "
                             f"got {bonus.shape}")
        twin = self._twin()
        twin.prior_bonus = torch.from_numpy(bonus).to(self.item_vectors.device)
        twin._prior_index = None
        return twin

    def with_prior_factor(self, factor: float) -> OneVision:
        """This model with its output prior's learned scales multiplied by ``factor`` at serving:
        0 leaves the decoder alone (how much of a hit is the decoder's own), 2 doubles the prior.
        Shares every weight with this model, like :meth:`with_item_vectors`."""
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"prior factor must be a finite number >= 0, got {factor}")
        twin = self._twin()
        twin.prior_factor = float(factor)
        return twin

    def _twin(self) -> OneVision:
        twin = copy.copy(self)  # a shallow copy: parameters and submodules are the same objects
        # its own buffer table, or setting a buffer would replace the original's too
        twin.__dict__["_buffers"] = dict(self._buffers)
        return twin

    def encode(self, q: Queries, noise: float = 0.0, visual_keep=None) -> Memory:
        """Encoder memory (B, T, d), its padding mask (B, T) (True = ignore) and the output prior.

        ``visual_keep`` (B, K) bool: visual tokens to keep (token pruning, notebook 05); a token no
        query keeps is not computed at all.
        """
        dev = self.device
        g = torch.as_tensor(q.global_, dtype=torch.float32, device=dev)
        v = torch.as_tensor(q.visual, dtype=torch.float32, device=dev)
        if noise:  # train photos' features were fitted by the alignment head: blur them a little
            g = g + noise * torch.randn_like(g) * g.std()
            v = v + noise * torch.randn_like(v) * v.std()
        keep = torch.ones(v.shape[:2], dtype=torch.bool, device=dev) if visual_keep is None \
            else torch.as_tensor(visual_keep, dtype=torch.bool, device=dev)
        columns = keep.any(0)
        v, keep, visual_pos = v[:, columns], keep[:, columns], self.visual_pos[columns]
        hist = pack_history(torch.as_tensor(q.history, dtype=torch.long, device=dev))
        hist = hist[:, (hist >= 0).any(0)]  # drop columns no query fills (pretraining: all of them)
        empty = hist < 0
        items = self.token(self.sid_tokens[hist.clamp(min=0)]).sum(-2)  # an SKU = the sum of its SID tokens
        if self.cfg.history_items == "attributes":  # … and of its type, colour and creator
            items = items + self.attribute(self.item_attributes[hist.clamp(min=0)]).sum(-2)
        items = items + self.history_pos[self.cfg.history - hist.shape[1]:]
        parts = [self.global_in(g)[:, None], self.visual_in(v) + visual_pos, items]
        masks = [torch.zeros(len(g), 1, dtype=torch.bool, device=dev), ~keep, empty]
        if self.cfg.task_token:
            parts.append(self.task(torch.as_tensor(q.task, dtype=torch.long, device=dev))[:, None])
            masks.append(torch.zeros(len(g), 1, dtype=torch.bool, device=dev))
        x, mask = torch.cat(parts, 1), torch.cat(masks, 1)
        prior = self.prior(F.normalize(g, dim=-1)) if self.cfg.prior_scale else None
        return Memory(self.encoder(x, src_key_padding_mask=mask), mask, prior)

    def prior(self, g: torch.Tensor, neighbours: int | None = None) -> DensePrior | TopPrior:
        """The output prior of unit query vectors ``g`` (B, D): exact over every SKU while
        ``neighbours`` (default ``cfg.prior_neighbours``) covers them all, else from the top-M."""
        m = neighbours or self.cfg.prior_neighbours
        if m >= len(self.item_vectors):
            return DensePrior.build(g @ self.item_vectors.T + self.prior_bonus, self.node_of)
        return self.top_prior(g, m)

    def top_prior(self, g: torch.Tensor, m: int) -> TopPrior:
        """The output prior of unit query vectors ``g`` (B, D) from their ``m`` best SKUs (faiss)."""
        scores, hits = self.prior_index().search(_prior_query(g), m)  # inner product = cosine + bonus
        missing = hits < 0  # an IVF search may find fewer than M: repeat the last SKU it found
        if missing.any():
            last = np.maximum((~missing).sum(1) - 1, 0)
            hits = np.where(missing, hits[np.arange(len(hits)), last][:, None], hits)
            scores = np.where(missing, scores[np.arange(len(hits)), last][:, None], scores)
        dev = self.device
        return TopPrior(torch.from_numpy(hits).to(dev), torch.from_numpy(scores).to(dev), self.node_of,
                        self.trie.nodes_after)

    def prior_base(self) -> np.ndarray:
        """What the prior's index holds: ``[item vector, bonus]`` (n_items, D + 1)."""
        base = torch.cat([self.item_vectors, self.prior_bonus[:, None]], 1)
        return np.ascontiguousarray(base.cpu().numpy())

    def prior_index(self):
        """faiss inner-product index of :meth:`prior_base`: exact up to ``cfg.prior_exact_max`` SKUs,
        IVF above (:func:`ovkit.gen.prior.ivf_prior_index`)."""
        if self._prior_index is None:
            base = self.prior_base()
            if len(base) <= self.cfg.prior_exact_max:
                import faiss

                self._prior_index = faiss.IndexFlatIP(base.shape[1])
                self._prior_index.add(base)
            else:
                self._prior_index = ivf_prior_index(base, self.cfg.prior_neighbours)
        return self._prior_index

    def prior_recall(self, g, neighbours: int | None = None) -> float:
        """Share of the exact top-M SKUs (M = ``cfg.prior_neighbours``) of unit query vectors ``g``
        (B, D) that :meth:`prior_index` finds (1.0 for the exact index)."""
        m = min(neighbours or self.cfg.prior_neighbours, len(self.item_vectors))
        return top_recall(self.prior_index(), self.prior_base(), _prior_query(torch.as_tensor(g)), m)

    def child_rows(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """Dense child rows (R, size_l) of trie ``nodes`` (R,) at ``level``: child node or -1."""
        return expand_children(self.get_buffer(f"trie_indptr{level}"), self.get_buffer(f"trie_code{level}"),
                               nodes, self.trie.sizes[level])

    def decode(self, memory, mask, prefix):
        """Hidden states (B, l+1, d) for decoder inputs ``[BOS, prefix…]``; prefix (B, l) tokens."""
        bos = torch.full((len(prefix), 1), BOS, dtype=torch.long, device=prefix.device)
        inp = torch.cat([bos, prefix], 1)
        x = self.token(inp) + self.level_pos[: inp.shape[1]]
        n = inp.shape[1]
        return self.decoder(x, memory, tgt_mask=self.causal[:n, :n], memory_key_padding_mask=mask,
                            tgt_is_causal=True)

    def start_decoding(self, mem: Memory) -> DecoderCache:
        """An empty :class:`DecoderCache` for incremental decoding of ``mem``'s queries (b of them)."""
        b, h = len(mem.memory), self.cfg.heads
        weights, cross = [], []
        for layer in self.decoder.layers:  # read once per search: module attribute lookups cost at batch 1
            if not layer.norm_first or layer.activation is not F.relu:
                raise NotImplementedError("decode_step is written for norm-first ReLU decoder layers")
            sa, ca = layer.self_attn, layer.multihead_attn
            (w_q, w_k, w_v), (b_q, b_k, b_v) = ca.in_proj_weight.chunk(3), ca.in_proj_bias.chunk(3)
            weights.append(_DecoderLayer(
                (layer.norm1.weight, layer.norm1.bias), (sa.in_proj_weight, sa.in_proj_bias),
                (sa.out_proj.weight, sa.out_proj.bias), (layer.norm2.weight, layer.norm2.bias), (w_q, b_q),
                (ca.out_proj.weight, ca.out_proj.bias), (layer.norm3.weight, layer.norm3.bias),
                (layer.linear1.weight, layer.linear1.bias), (layer.linear2.weight, layer.linear2.bias),
                layer.norm1.eps))
            # the memory's keys/values: once per query, not once per beam and level
            memory = mem.memory
            cross.append((_heads(F.linear(memory, w_k, b_k), h), _heads(F.linear(memory, w_v, b_v), h)))
        empty = mem.memory.new_zeros(b, 1, h, 0, self.cfg.d_model // h)
        final = self.decoder.norm
        return DecoderCache(cross, ~mem.mask[:, None, None, :], [(empty, empty)] * len(weights), weights,
                            (final.weight, final.bias, final.eps))

    def decode_step(self, cache: DecoderCache, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (b, n, d) of the next position of n beams per query, given their input tokens.

        What :meth:`decode` computes for the last position, with every earlier position's
        self-attention keys/values read from ``cache`` (this position's are appended to it) and the
        encoder memory's computed once per query: a beam adds one position per level, not a whole
        prefix. The layers are ``nn.TransformerDecoderLayer``'s (norm first, ReLU, no dropout at
        inference), written out in functional form to spare a module call per operation.

        Args:
            cache: from :meth:`start_decoding`, rows (b, n) in the order of ``tokens``.
            tokens: (b, n) decoder input tokens (BOS at level 0, then the beam's last SID token).
        """
        b, n = tokens.shape
        h, d = self.cfg.heads, self.cfg.d_model
        level = cache.selves[0][0].shape[3]
        x = F.embedding(tokens, self.token.weight) + self.level_pos[level]
        for i, w in enumerate(cache.weights):
            q, k, v = F.linear(F.layer_norm(x, (d,), *w.norm1, w.eps), *w.self_in).chunk(3, -1)
            past_k, past_v = cache.selves[i]
            keys = torch.cat([past_k, k.view(b, n, h, 1, -1)], 3)  # (b, n, h, level + 1, hd)
            values = torch.cat([past_v, v.view(b, n, h, 1, -1)], 3)
            cache.selves[i] = (keys, values)
            # one query position over its own past (causal by construction): a plain softmax
            logits = q.view(b, n, h, 1, -1) @ keys.transpose(-1, -2) * (d // h) ** -0.5
            att = torch.softmax(logits, -1) @ values
            x = x + F.linear(att.view(b, n, d), *w.self_out)
            q = _heads(F.linear(F.layer_norm(x, (d,), *w.norm2, w.eps), *w.cross_q), h)  # (b, h, n, hd)
            cross_k, cross_v = cache.cross[i]
            att = F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=cache.attend)
            x = x + F.linear(att.transpose(1, 2).reshape(b, n, d), *w.cross_out)
            x = x + F.linear(F.relu(F.linear(F.layer_norm(x, (d,), *w.norm3, w.eps), *w.ff1)), *w.ff2)
        weight, bias, eps = cache.final_norm
        return F.layer_norm(x, (d,), weight, bias, eps)

    def level_logprobs(self, hidden, level: int, nodes, prior=None, rows=None, constrained: bool = True,
                       child=None):
        """Trie-normalised log-probabilities (N, size_l) of level ``level``'s codes; invalid = -inf.

        ``nodes`` (N,): each row's prefix node; ``prior``/``rows``: the encoder's prior (B, n_nodes)
        and the query each row belongs to; ``child``: the nodes' :meth:`child_rows` if the caller has
        them. Unconstrained (a demonstration): no trie mask.
        """
        logits = self.out[level](hidden)
        if child is None:
            child = self.child_rows(level, nodes.clamp(min=0))
        if prior is not None:  # vision-aligned output: how close the query is to each child's SKUs
            scale = self.log_prior_scale[level].exp() * self.prior_factor
            logits = logits + scale * prior.at(level, rows, child)
        if constrained:
            logits = logits.masked_fill(child < 0, float("-inf"))
        return torch.log_softmax(logits, -1)

    def sequence_logprob(self, mem: Memory, items):
        """log π(SID | query) (B, M) of M candidate SKUs per query, by teacher forcing."""
        b, m = items.shape
        items = torch.as_tensor(items, dtype=torch.long, device=self.device)
        memory = mem.memory.repeat_interleave(m, 0)
        mask = mem.mask.repeat_interleave(m, 0)
        rows = torch.arange(b, device=self.device).repeat_interleave(m)
        flat = items.reshape(-1)
        tokens = self.sid_tokens[flat]
        hidden = self.decode(memory, mask, tokens[:, :-1])
        path = self.trie_path[flat]
        total = torch.zeros(len(flat), device=self.device)
        for level in range(self.trie.depth):
            logp = self.level_logprobs(hidden[:, level], level, path[:, level], mem.prior, rows)
            code = tokens[:, level] - int(self.trie.offsets[level])
            total = total + logp.gather(1, code[:, None]).squeeze(1)
        return total.view(b, m)

    def forward(self, q: Queries, items, noise: float = 0.0):
        """log π of ``items`` (B, M) for queries ``q``."""
        return self.sequence_logprob(self.encode(q, noise), items)
