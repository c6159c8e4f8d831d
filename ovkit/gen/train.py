"""OneVision's training (notebook 04): examples, losses, the pretrain → SFT → DPO loops, evaluation
and the cached stages."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import align, config, metrics, store, vrq
from .model import DPO_PAIRS, SFT_ON, GenConfig, OneVision, Queries, item_attributes, make_queries
from .search import beam_search
from .trie import Trie, codes_fingerprint

# --------------------------------------------------------------------------- training data


@dataclass
class Examples:
    """Training rows: queries, target SKUs and weights (one row per example)."""

    queries: Queries
    targets: np.ndarray  # (N,) SKU ids
    weights: np.ndarray  # (N,)

    def __len__(self):
        return len(self.targets)

    def take(self, rows) -> Examples:
        return Examples(self.queries.take(rows), self.targets[rows], self.weights[rows])


def pretraining_examples(catalogue, embeddings, tokens, history_len: int) -> Examples:
    """Every catalogue view and every training photo → its SKU; no user (task 0)."""
    views = catalogue.views
    keep = (views["kind"] != "query") | (views["split"] == "train")
    rows = views[keep]
    q = make_queries(embeddings, tokens, rows["view_id"].to_numpy(), None, history_len)
    return Examples(q, rows["item_id"].to_numpy(np.int64), np.ones(len(rows), np.float32))


def sft_examples(logs, embeddings, tokens, history_len: int, order_weight: float, sessions=None,
                 on: str = "clicks") -> Examples:
    """Logged clicks: (query photo, the user's earlier clicks) → the clicked SKU; orders weigh more.

    ``on="orders"``: only the ordered SKUs, each of weight 1 (:data:`~ovkit.gen.model.SFT_ON`).
    """
    if on not in SFT_ON:
        raise ValueError(f"SFT examples are built on {' or '.join(SFT_ON)}, got {on!r}")
    log = logs.train_log
    if sessions is not None:
        log = log[log["session"].isin(sessions)]
    clicks = log[log["ordered"]] if on == "orders" else log[log["clicked"]]
    hist = [logs.train_histories[s] for s in clicks["session"]]
    q = make_queries(embeddings, tokens, clicks["view_id"].to_numpy(), hist, history_len)
    weight = 1 + (0 if on == "orders" else order_weight) * clicks["ordered"].to_numpy(np.float32)
    return Examples(q, clicks["item_id"].to_numpy(np.int64), weight.astype(np.float32))


def preference_lists(logs, embeddings, tokens, history_len: int, sessions=None, pairs: str = "graded"):
    """DPO data from the logs: per session and preferred SKU, the exposed SKUs it is preferred to.

    ``pairs`` (:data:`~ovkit.gen.model.DPO_PAIRS`): ``graded`` — ordered (2) ≻ clicked but not ordered
    (1) ≻ exposed but not clicked (0); ``clicks`` — clicked (1) ≻ not clicked (0); ``skip_above`` —
    graded, each rejected SKU shown above the preferred one.
    Returns (queries, chosen (N,), rejected (N, R) padded with -1).
    """
    if pairs not in DPO_PAIRS:
        raise ValueError(f"DPO pairs must be one of {', '.join(DPO_PAIRS)}, got {pairs!r}")
    log = logs.train_log
    if sessions is not None:
        log = log[log["session"].isin(sessions)]
    grade = log["clicked"].astype(int) + (0 if pairs == "clicks" else log["ordered"].astype(int))
    log = log.assign(grade=grade)
    views, hists, chosen, rejected = [], [], [], []
    for session, rows in log.groupby("session", sort=True):
        grades, items = rows["grade"].to_numpy(), rows["item_id"].to_numpy()
        positions = rows["position"].to_numpy()
        for item, grade, position in zip(items[grades > 0], grades[grades > 0], positions[grades > 0],
                                         strict=True):
            below = grades < grade
            if pairs == "skip_above":
                below &= positions < position
            lower = items[below]
            if len(lower):
                views.append(rows["view_id"].iat[0])
                hists.append(logs.train_histories[session])
                chosen.append(item)
                rejected.append(lower)
    width = max((len(r) for r in rejected), default=1)
    table = np.full((len(rejected), width), -1, np.int64)
    for row, r in enumerate(rejected):
        table[row, : len(r)] = r
    return make_queries(embeddings, tokens, np.asarray(views, np.int64), hists, history_len), \
        np.asarray(chosen, np.int64), table


def colourway_facts(catalogue, logs, codes: np.ndarray, chosen: np.ndarray, rejected: np.ndarray):
    """What SFT and DPO can learn about colourways: shares of logged clicks and test orders on the
    photographed SKU or another colourway of it, of DPO's rejected SKUs that are a colourway of the
    chosen one (``chosen``/``rejected`` from :func:`preference_lists`), and of colourway pairs that
    share SID prefixes (``codes`` (n_items, L))."""
    model_of = catalogue.items["model_id"].to_numpy()
    train = logs.train_sessions.set_index("session")
    clicked = logs.train_log[logs.train_log["clicked"]]
    click, photo = clicked["item_id"].to_numpy(), train.loc[clicked["session"], "intent"].to_numpy()
    ordered, intent = logs.test_sessions["ordered"].to_numpy(), logs.test_sessions["intent"].to_numpy()
    valid = rejected >= 0
    sibling_rejected = (model_of[np.maximum(rejected, 0)] == model_of[chosen][:, None]) & valid
    same_model = model_of[ordered] == model_of[intent]
    return pd.Series({
        "logged clicks on the SKU in the photo": (click == photo).mean(),
        "logged clicks on another colourway of it": ((model_of[click] == model_of[photo])
                                                     & (click != photo)).mean(),
        "test orders of the SKU in the photo": (ordered == intent).mean(),
        "test orders of another colourway": (same_model & (ordered != intent)).mean(),
        "DPO rejected SKUs that are another colourway of the chosen": sibling_rejected.sum() / valid.sum(),
        "colourway pairs sharing SID level 1": vrq.colourway_prefix_share(catalogue, codes, 1),
        "colourway pairs sharing SID levels 1-2": vrq.colourway_prefix_share(catalogue, codes, 2),
    }, name="share")


# --------------------------------------------------------------------------- losses


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float, listwise: bool = False):
    """DPO loss (mean) from sequence log-probabilities: chosen (N,), rejected (N, R).

    Pairwise (Rafailov et al. 2023): −log σ(β[Δ_w − Δ_l]) for each rejected l, averaged over pairs.
    Listwise (softmax over one chosen and all its rejected, as in S-DPO, Chen et al. 2024):
    −log exp(βΔ_w) / (exp(βΔ_w) + Σ_l exp(βΔ_l)), with Δ = log π − log π_ref. Rejected slots whose
    policy log-probability is −inf are padding and drop out of both forms.
    """
    margin_w = beta * (policy_chosen - ref_chosen)  # (N,)
    valid = torch.isfinite(policy_rejected)
    margin_l = beta * torch.where(valid, policy_rejected - ref_rejected, torch.zeros_like(policy_rejected))
    if listwise:
        logits = torch.cat([margin_w[:, None], margin_l.masked_fill(~valid, float("-inf"))], 1)
        return -(margin_w - torch.logsumexp(logits, 1)).mean()
    pair = -F.logsigmoid(margin_w[:, None] - margin_l)
    return (pair * valid).sum() / valid.sum().clamp(min=1)


# --------------------------------------------------------------------------- training loops


def _batches(n: int, size: int, rng: np.random.Generator):
    """Endless shuffled mini-batches of row indices."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n - size + 1 if n >= size else 1, size):
            yield order[start : start + size]


def _optimiser(model, lr: float, steps: int):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    # a warm-up of exactly one step makes OneCycleLR divide by zero (10 steps × 0.1): take 1.5 then
    warmup = 0.1 if steps != 10 else 0.15
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=warmup)
    return opt, sched


def train_likelihood(model: OneVision, data: Examples, steps: int, desc: str, lr: float,
                     replay: Examples | None = None, replay_share: float = 0.0, validate=None,
                     progress: bool = True) -> pd.DataFrame:
    """Maximise the weighted log-likelihood of the targets' SIDs (pretraining and SFT).

    ``replay``: examples mixed into every batch (``replay_share`` of it), e.g. pretraining views
    during SFT. ``validate(model) -> dict`` runs every ``eval_every`` steps. Returns the curve.
    """
    cfg = model.cfg
    rng = np.random.default_rng(cfg.seed)
    n_replay = int(round(cfg.batch * replay_share)) if replay is not None else 0
    main = _batches(len(data), cfg.batch - n_replay, rng)
    extra = _batches(len(replay), n_replay, rng) if n_replay else None
    opt, sched = _optimiser(model, lr, steps)
    history = _Curve(model, validate)
    for step in config.progress(range(1, steps + 1), progress, desc=desc, unit="step"):
        model.train()
        batch = data.take(next(main))
        parts = [batch] + ([replay.take(next(extra))] if extra else [])
        loss = 0.0
        for part in parts:
            logp = model(part.queries, part.targets[:, None], noise=cfg.input_noise)[:, 0]
            w = torch.as_tensor(part.weights, device=model.device)
            loss = loss + -(w * logp).sum() / cfg.batch
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.add(step, steps, {"loss": loss.item()})
    return history.finish()


def train_dpo(model: OneVision, reference: OneVision, queries: Queries, chosen, rejected, steps: int,
              validate=None, progress: bool = True) -> pd.DataFrame:
    """DPO against a frozen ``reference`` (the SFT model); the chosen item's NLL anchors the likelihood."""
    cfg = model.cfg
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(cfg.seed + 1)
    if cfg.dpo == "pairwise":  # one row per (chosen, rejected) pair
        row, col = np.nonzero(rejected >= 0)
        queries, chosen, rejected = queries.take(row), chosen[row], rejected[row, col][:, None]
    if len(chosen) == 0:
        raise ValueError("the logs hold no preference pairs (no session with a click above a non-click)")
    batches = _batches(len(chosen), min(cfg.batch, len(chosen)), rng)
    opt, sched = _optimiser(model, cfg.dpo_lr, steps)
    history = _Curve(model, validate)
    for step in config.progress(range(1, steps + 1), progress, desc="dpo", unit="step"):
        model.train()
        rows = next(batches)
        q = queries.take(rows)
        items = np.concatenate([chosen[rows, None], np.maximum(rejected[rows], 0)], 1)
        pad = torch.as_tensor(rejected[rows] < 0, device=model.device)
        logp = model(q, items)
        with torch.no_grad():
            ref = reference(q, items)
        rej = logp[:, 1:].masked_fill(pad, float("-inf"))
        loss = dpo_loss(logp[:, 0], rej, ref[:, 0], ref[:, 1:], cfg.beta, cfg.dpo == "listwise")
        nll = -logp[:, 0].mean()
        total = loss + cfg.dpo_nll * nll
        opt.zero_grad()
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.add(step, steps, {"loss": total.item(), "dpo": loss.item(), "nll": nll.item()})
    return history.finish()


class _Curve:
    """The training curve; with ``validate``, the checkpoint with the best validation HR@10 is kept
    (checked every ``eval_every`` steps and at the end, so the stage always ends on a trained model)."""

    def __init__(self, model, validate):
        self.model, self.validate, self.rows, self.best = model, validate, [], (-np.inf, None, 0)

    def add(self, step, steps, row):
        row = {"step": step, **row}
        if self.validate is not None and (step % self.model.cfg.eval_every == 0 or step == steps):
            row.update(self.validate(self.model))
            if row["val_hr@10"] > self.best[0]:
                state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.best = (row["val_hr@10"], state, step)
        self.rows.append(row)

    def finish(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows)
        if self.best[1] is not None:
            self.model.load_state_dict(self.best[1])
            frame["kept"] = frame["step"] == self.best[2]
        return frame


# --------------------------------------------------------------------------- evaluation


def session_queries(logs, embeddings, tokens, history_len: int, with_user: bool = True,
                    split: str = "test") -> Queries:
    """The offline test (or val) sessions as queries; their user's training clicks as history."""
    sessions, hists = logs.sessions(split)
    hist = [hists[s] for s in sessions["session"]] if with_user else None
    return make_queries(embeddings, tokens, sessions["view_id"].to_numpy(), hist, history_len)


def cold_prior_sweep(model: OneVision, logs, embeddings, tokens, cold, bonuses, history_len: int,
                     tolerance: float = 0.01, k: int = 10, *, beam: int):
    """Choose, on validation sessions, a prior bonus for cold SKUs (the cold remedy of notebook 04).

    Each bonus ``b`` adds ``b`` to every cold SKU's cosine in the output prior
    (:meth:`OneVision.with_prior_bonus`). The chosen one has the best exact-SKU recall@k on the
    cold validation sessions among those whose warm validation HR@k is at most ``tolerance`` below
    no bonus's; ties go to the smaller bonus.

    Args:
        cold: (n_items,) bool, the SKUs with no training photo.
        bonuses: candidate values; 0 is always added.
        beam: the beam width served (the run's ``GEN`` beam).
    Returns:
        (chosen bonus, table with one row per bonus); with no cold validation sessions (a dataset
        whose cold SKUs have test photos only) nothing can be chosen: (0.0, an empty table).
    """
    if logs.cold_val_sessions is None:
        return 0.0, pd.DataFrame(columns=["bonus", "allowed"]).set_index("bonus")
    queries = {split: session_queries(logs, embeddings, tokens, history_len, split=split)
               for split in ("val", "cold_val")}
    rows = []
    for bonus in sorted({0.0, *map(float, bonuses)}):
        boosted = model.with_prior_bonus(bonus * np.asarray(cold, np.float32))
        warm = evaluate(beam_search(boosted, queries["val"], k, beam=beam)[0], logs, "val")
        new = evaluate(beam_search(boosted, queries["cold_val"], k, beam=beam)[0], logs, "cold_val")
        rows.append({"bonus": bonus, f"warm hr@{k}": warm[f"hr@{k}"], f"cold hr@{k}": new[f"hr@{k}"],
                     f"cold recall_exact@{k}": new[f"recall_exact@{k}"]})
    table = pd.DataFrame(rows).set_index("bonus")
    table["allowed"] = table[f"warm hr@{k}"] >= table.loc[0.0, f"warm hr@{k}"] - tolerance
    best = table[table["allowed"]].sort_values(f"cold recall_exact@{k}", ascending=False, kind="stable")
    return float(best.index[0]), table


def prior_factor_sweep(model: OneVision, logs, embeddings, tokens, factors, history_len: int, k: int = 10, *,
                       beam: int):
    """Choose, on validation sessions, a factor for the output prior's learned scales at serving.

    The scales are learned with the decoder to fit the training examples, never to rank the
    validation sessions; each factor ``f`` serves :meth:`OneVision.with_prior_factor` ``(f)``. The
    chosen one has the best HR@k on the validation sessions; ties go to the factor nearest 1 (the
    learned scales), then the smaller.

    Args:
        factors: candidate values (>= 0); 1 (the learned scales) is always added.
        beam: the beam width served (the run's ``GEN`` beam).
    Returns:
        (chosen factor, table with one row per factor: validation HR@k and MRR@k).
    """
    queries = session_queries(logs, embeddings, tokens, history_len, split="val")
    rows = []
    for factor in sorted({1.0, *map(float, factors)}):
        scores = evaluate(beam_search(model.with_prior_factor(factor), queries, k, beam=beam)[0], logs, "val")
        rows.append({"factor": factor, **{f"val {m}": scores[m] for m in (f"hr@{k}", f"mrr@{k}")}})
    table = pd.DataFrame(rows).set_index("factor")
    distance = lambda f: abs(np.log(f)) if f else np.inf  # noqa: E731  (from the learned scales)
    order = sorted(table.index, key=lambda f: (-table.loc[f, f"val hr@{k}"], distance(f), f))
    return float(order[0]), table


def evaluate(ranked: np.ndarray, logs, split: str = "test") -> dict:
    """The notebook-03 metrics of ranked lists (S, k) on the test (or val) sessions, plus validity."""

    test = logs.sessions(split)[0]
    row = metrics.ranking_report(ranked, test["ordered"].to_numpy())
    row["recall_exact@10"] = metrics.hit_rate(ranked, test["intent"].to_numpy(), 10)
    row["hr@10_clicked"] = metrics.hit_rate(ranked, test["clicked"].to_numpy(), 10)
    row["valid"] = float((ranked >= 0).mean())
    return row


# --------------------------------------------------------------------------- new photos


# --------------------------------------------------------------------------- the stages

STAGES = ("pretrain", "sft", "dpo")
_SFT_ONLY = ("sft_lr", "sft_steps", "order_weight", "sft_replay", "sft_on")
_DPO_ONLY = ("dpo", "beta", "dpo_lr", "dpo_nll", "dpo_steps", "dpo_pairs")
# A stage's cache key holds every GenConfig field but these, which cannot change its checkpoint (a
# new field is keyed unless listed here: forgetting it costs a rebuild, never a stale model).
KEY_EXCLUDED = {
    "pretrain": {**{f: "read by the SFT stage only" for f in _SFT_ONLY},
                 **{f: "read by the DPO stage only" for f in _DPO_ONLY}},
    "sft": {f: "read by the DPO stage only" for f in _DPO_ONLY},
    "dpo": {},
}
# Settings added after stages were cached: keyed only when set away from their default, so checkpoints
# built before they existed (which used that default) stay valid.
KEYED_WHEN_SET = {"sft_on": "clicks", "dpo_pairs": "graded", "history_items": "sid"}
_UNSET = object()
STAGE_VERSION = 2  # bump when the stage's build code changes what it writes (see CONTRIBUTING.md); 2: the
# top-M prior's IVF (above prior_exact_max SKUs) finds more of the top M


def stage_params(cfg: GenConfig, stage: str) -> dict:
    """The settings in ``stage``'s cache key: all of ``cfg`` but ``KEY_EXCLUDED[stage]`` (the beam width
    and ``eval_every`` included: they choose the checkpoint that validation keeps)."""
    excluded = KEY_EXCLUDED[stage]
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in excluded
            and KEYED_WHEN_SET.get(f.name, _UNSET) != getattr(cfg, f.name)}



@dataclass
class Trained:
    """One training stage's model, its training curve and where it is cached."""

    stage: str
    model: OneVision
    history: pd.DataFrame
    train_seconds: float
    artifact: store.Artifact


LOGS_FRAMES = ("train_log", "test_sessions", "val_sessions")


def logs_fingerprint(logs, frames=LOGS_FRAMES) -> str:
    """Hash of the training logs and the evaluation sessions a model is trained and checked on
    (``frames``: the parts of :class:`ovkit.sim.Logs` hashed)."""
    h = hashlib.sha256()
    for name in frames:
        h.update(pd.util.hash_pandas_object(getattr(logs, name), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


# What each stage reads of the logs: pretraining learns from the catalogue and training photos and is
# checked on the validation sessions only, so logging policies that change the training logs alone
# (e.g. SIM exposure) share one pretrained model.
LOGS_READ = {"pretrain": ("val_sessions",), "sft": LOGS_FRAMES, "dpo": LOGS_FRAMES}


def save_model(model: OneVision, path, catalogue_fp: str) -> None:
    torch.save({"state_dict": model.state_dict(), "sids": codes_fingerprint(model.trie.codes),
                "catalogue": catalogue_fp, "config": dataclasses.asdict(model.cfg),
                "n_visual": int(model.visual_pos.shape[0])}, path)


def load_model(path, ids, device: str = "cpu") -> OneVision:
    """A checkpoint, checked against the SIDs it is used with (by hash); ``weights_only`` loading."""
    saved = torch.load(path, map_location=device, weights_only=True)
    expected = codes_fingerprint(ids.codes)
    if saved["sids"] != expected:
        raise ValueError(f"{path} was trained on other semantic IDs (SID hash {saved['sids']}, catalogue "
                         f"{saved['catalogue']}), not these ({expected}): its decoder would emit IDs of "
                         f"other products. Retrain it with gen.train_stages(...) on these SIDs")
    cfg = GenConfig.from_overrides(saved["config"])
    attributes = saved["state_dict"].get("item_attributes")  # history_items="attributes" only
    model = OneVision(cfg, Trie(ids.codes, ids.sizes), ids.item_vectors, saved["n_visual"],
                      None if attributes is None else attributes.cpu().numpy())
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()


@dataclass
class _Stages:
    """What every training stage reads, prepared once by :func:`train_stages`."""

    catalogue: object
    cfg: GenConfig
    ids: object  # vrq.SemanticIDs
    logs: object  # sim.Logs
    emb: np.ndarray  # (n_views, d) view embeddings
    tok: np.ndarray  # (n_views, K, d) visual tokens
    device: str
    progress: bool

    def __post_init__(self):
        self.trie = Trie(self.ids.codes, self.ids.sizes)
        self.val = {user: session_queries(self.logs, self.emb, self.tok, self.cfg.history, user, "val")
                    for user in (False, True)}

    def validator(self, with_user: bool):
        """The curve's check: HR@10, MRR@10 and exact recall@10 on the validation sessions."""
        def check(model):
            ranked = beam_search(model, self.val[with_user], 10, beam=max(self.cfg.beam, 10))[0]
            r = evaluate(ranked, self.logs, "val")
            return {f"val_{k}": r[k] for k in ("hr@10", "mrr@10", "recall_exact@10")}
        return check


def _train(s: _Stages, stage: str, model: OneVision, previous) -> pd.DataFrame:
    """One stage's training loop on ``model`` (in place); returns its curve."""
    cfg = s.cfg
    if stage == "pretrain":
        data = pretraining_examples(s.catalogue, s.emb, s.tok, cfg.history)
        return train_likelihood(model, data, cfg.pretrain_steps, "pretrain", cfg.lr,
                                validate=s.validator(False), progress=s.progress)
    if stage == "sft":
        data = sft_examples(s.logs, s.emb, s.tok, cfg.history, cfg.order_weight, on=cfg.sft_on)
        replay = pretraining_examples(s.catalogue, s.emb, s.tok, cfg.history)
        return train_likelihood(model, data, cfg.sft_steps, "sft", cfg.sft_lr, replay, cfg.sft_replay,
                                s.validator(True), s.progress)
    reference = load_model(previous / "model.pt", s.ids, s.device)  # the SFT model, frozen
    pairs = preference_lists(s.logs, s.emb, s.tok, cfg.history, pairs=cfg.dpo_pairs)
    return train_dpo(model, reference, *pairs, cfg.dpo_steps, s.validator(True), s.progress)


def _build(s: _Stages, stage: str, previous, catalogue_fp: str, folder) -> dict:
    """Write one stage's checkpoint and curve into ``folder`` (the stage cache's build step)."""
    torch.manual_seed(s.cfg.seed)
    if previous is None:
        attributes = item_attributes(s.catalogue.items) if s.cfg.history_items == "attributes" else None
        model = OneVision(s.cfg, s.trie, s.ids.item_vectors, s.tok.shape[1], attributes).to(s.device)
    else:  # continue from the previous stage's checkpoint
        model = load_model(previous / "model.pt", s.ids, s.device)
        model.cfg = s.cfg
    started = time.perf_counter()
    history = _train(s, stage, model, previous)
    seconds = time.perf_counter() - started
    save_model(model, folder / "model.pt", catalogue_fp)
    history.to_csv(folder / "history.csv", index=False)
    return {"train_seconds": round(seconds, 2)}


def train_stages(catalogue, align_run: align.Aligned, ids, logs, cfg: GenConfig | None = None,
                 device: str = "cpu", progress: bool = True, rebuild: bool = False) -> dict[str, Trained]:
    """Stages ``gen_pretrain`` → ``gen_sft`` → ``gen_dpo``, each cached with its checkpoint.

    Args:
        catalogue: the catalogue (its SIDs checked by fingerprint).
        align_run: ``align.aligned(...)`` (embeddings and visual tokens of every view).
        ids: ``vrq.semantic_ids(...)`` — the SIDs the model decodes.
        logs: ``sim.simulate(...)`` — SFT/DPO data and the validation sessions of the curves.
        cfg: the :class:`GenConfig` (``GenConfig.from_overrides(GEN)``; None: its defaults).
    Returns:
        ``{"pretrain": Trained, "sft": Trained, "dpo": Trained}``.
    """
    cfg = config.expect(cfg, GenConfig, "GEN")
    ids.check(catalogue)
    s = _Stages(catalogue, cfg, ids, logs, align_run.embeddings, np.asarray(align_run.tokens, np.float32),
                device, progress)
    sids = codes_fingerprint(ids.codes)
    catalogue_fp = ids.artifact.meta["catalogue_fingerprint"]
    out, upstream, previous = {}, [align_run.artifact, ids.artifact], None
    for stage in STAGES:
        build = functools.partial(_build, s, stage, previous, catalogue_fp)
        fps = {"sids": sids, "logs": logs_fingerprint(logs, LOGS_READ[stage])}
        artifact = store.cached(f"gen_{stage}", {**stage_params(cfg, stage), **fps}, build, upstream=upstream,
                                version=STAGE_VERSION, rebuild=rebuild)
        model = load_model(artifact / "model.pt", ids, device)
        model.cfg = cfg  # the saved config holds the later stages' settings of whoever built it
        curve = pd.read_csv(artifact / "history.csv")
        out[stage] = Trained(stage, model, curve, artifact.meta["train_seconds"], artifact)
        upstream, previous = upstream + [artifact], artifact
    return out
