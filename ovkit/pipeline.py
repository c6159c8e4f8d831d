"""What notebooks 00-04 build, loaded from the stage cache in one call (notebooks 02-06, benchmarks).

``load(params, upto=...)`` takes the notebooks' parameter names (``N_MODELS``, ``ALIGN``, ``GEN``, …,
as in a ``params/<profile>.yaml``, or a notebook's ``globals()``) and returns a :class:`Pipeline`
holding the stages up to a stopping point, in order:

    "catalogue" → "align" (feature maps, aligned head and embeddings) → "vrq" (semantic IDs)
    → "sim" (the cascade and the simulator's logs) → "gen" (OneVision's three stages; the default)

Missing stages are built on demand, exactly as the notebooks build them, so the same parameters
always give the same objects; every settings dict is validated before anything is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

import ovkit

from . import align, backbone, config, data, fusion, gen, mca, seeds, sim, vrq

STAGES = ("catalogue", "align", "vrq", "sim", "gen")
# the notebook parameters notebooks 00-04 read (defaults: ovkit.config.PARAMETERS, as in the notebooks)
USED = ("N_MODELS", "COLOURWAYS", "QUERY_VIEWS", "COLD_FRACTION", "RENDER", "DATA_SOURCE", "SEED",
        "BACKBONE", "WEIGHTS", "DEVICE", "ALIGN", "VRQ", "SIM", "MCA", "GEN")


@dataclass
class Pipeline:
    """What notebooks 00-04 produce, for one set of parameters (None: after the stopping point)."""

    params: dict
    device: str  # where the models run
    gen_cfg: gen.GenConfig
    catalogue: data.Catalogue
    frozen_maps: np.ndarray | None = None  # the frozen trunk's feature maps of every view
    maps: np.ndarray | None = None  # the maps the alignment head reads (frozen, or the tuned trunk's)
    align_run: align.Aligned | None = None
    ids: vrq.SemanticIDs | None = None
    cascade: mca.Cascade | None = None  # fitted on the training logs
    logs: sim.Logs | None = None
    stages: dict = dataclasses.field(default_factory=dict)  # "pretrain" / "sft" / "dpo" → gen.Trained
    _variants: dict = dataclasses.field(default_factory=dict, repr=False)  # cascades on other indexes

    @property
    def embeddings(self) -> np.ndarray:
        return self.align_run.embeddings

    @property
    def tokens(self) -> np.ndarray:
        return np.asarray(self.align_run.tokens, np.float32)

    @property
    def model(self):
        """The final OneVision model (after DPO)."""
        return self.stages["dpo"].model

    def cascade_on(self, vectors: str):
        """The cascade with its recall index on ``"catalogue"`` views or ``"fused"`` SKU vectors (the
        ones OneVision's prior reads), fitted on the same logs; the configured one is ``cascade``."""
        if vectors == self.cascade.cfg.vectors:
            return self.cascade
        if vectors not in self._variants:
            cfg = mca.MCAConfig.from_overrides({**dataclasses.asdict(self.cascade.cfg), "vectors": vectors})
            variant = mca.Cascade(self.catalogue, self.embeddings, cfg, fused_vectors=self.ids.item_vectors)
            self._variants[vectors] = variant.fit(self.logs.train_log, self.logs.train_histories)
        return self._variants[vectors]

    def cascade_results(self, split: str = "test") -> tuple:
        """The cascade and visual-only retrieval on both indexes, on the sessions of ``split``.

        Returns (table, ranked): rows ``mca``, ``visual_only`` (catalogue index), ``mca_fused``,
        ``visual_only_fused`` with ``mca.offline_eval``'s columns, and each row's top-10 lists.
        """
        rows, ranked = {}, {}
        for vectors, suffix in (("catalogue", ""), ("fused", "_fused")):
            table, lists, _ = mca.offline_eval(self.cascade_on(vectors), self.logs, split=split)
            for name, column in (("mca", "rank"), ("visual_only", "visual_only")):
                rows[name + suffix], ranked[name + suffix] = table.loc[name], lists[column]
        return pd.DataFrame(rows).T, ranked

    def reference_cascade(self) -> tuple:
        """The cascade OneVision is judged against: its better index by HR@10 on the *validation*
        sessions (chosen there, never on test). Returns (vectors, cascade, validation HR@10 by index)."""
        table = self.cascade_results("val")[0]
        scores = {"catalogue": table.loc["mca", "hr@10"], "fused": table.loc["mca_fused", "hr@10"]}
        best = max(scores, key=scores.get)  # a tie keeps the catalogue index (the shop's default)
        return best, self.cascade_on(best), scores

    def model_on(self, vectors: str, stage: str = "dpo"):
        """A OneVision stage whose output prior reads ``"fused"`` SKU vectors (as trained) or
        ``"catalogue"``-view-only vectors (the information the catalogue cascade indexes)."""
        model = self.stages[stage].model
        if vectors == "fused":
            return model
        if vectors != "catalogue":
            raise ValueError(f"vectors must be 'catalogue' or 'fused', got {vectors!r}")
        return model.with_item_vectors(fusion.catalogue_only_vectors(self.catalogue, self.embeddings))

    def train_stages(self, progress: bool = True) -> dict:
        """Train OneVision's three stages (or load them from the stage cache) and serve them from now
        on (:attr:`model`, :meth:`model_on`); returns them, stage name → gen.Trained."""
        self.stages = gen.train_stages(self.catalogue, self.align_run, self.ids, self.logs, self.gen_cfg,
                                       self.device, progress=progress)
        return self.stages

    def ranked(self, stage: str, split: str = "test", k: int = 10) -> np.ndarray:
        """Top-``k`` SKUs (Q, k) of a stage's beam search on the sessions of ``split``; pretraining
        never saw a user, so it is served without history (as it was validated)."""
        queries = self.queries(split, with_user=stage != "pretrain")
        return gen.beam_search(self.stages[stage].model, queries, k, beam=self.gen_cfg.beam)[0]

    def queries(self, split: str = "test", with_user: bool = True):
        """gen.Queries of the sessions of ``split`` (test, val, cold_test or cold_val)."""
        return gen.session_queries(self.logs, self.embeddings, self.tokens, self.gen_cfg.history,
                                   with_user=with_user, split=split)


def load(params, upto: str = "gen") -> Pipeline:
    """Load (or build) notebooks 00-04's artifacts for notebook-style ``params``, up to a stage.

    Args:
        params: a mapping with the notebooks' parameter names; names the pipeline does not use
            (``PRUNE_GRID``, a notebook's other globals) are ignored, so a whole profile or a
            notebook's ``globals()`` can be passed; absent ones take the registry's defaults
            (:data:`ovkit.config.PARAMETERS`, the notebooks' own).
        upto: the last stage to load, one of :data:`STAGES`.
    """
    if upto not in STAGES:
        raise ValueError(f"upto must be one of {', '.join(STAGES)}, got {upto!r}")
    p = {**config.defaults(USED), **{k: params[k] for k in USED if k in params}}
    p = seeds.seed_all(p)  # every component's seed derives from SEED unless its dict sets one
    reach = STAGES.index(upto)
    # every settings dict parsed once, before anything is built: a typo fails first
    cfg = {name: config.settings(name, p[name]) for name in ("ALIGN", "VRQ", "SIM", "MCA", "GEN")}
    device = ovkit.device(p["DEVICE"])
    cat = data.from_parameters(p)
    built = Pipeline(p, device, cfg["GEN"], cat)
    if reach < STAGES.index("align"):
        return built
    # the head trains on the maps at the cut (and the blocks after it); baselines on the frozen trunk's
    (built.maps, artifact), (built.frozen_maps, _) = backbone.trunk_maps(
        cat, p["BACKBONE"], p["WEIGHTS"], cfg["ALIGN"].tune_blocks, device)
    built.align_run = align.aligned(cat, built.maps, artifact, cfg["ALIGN"], device)
    if reach < STAGES.index("vrq"):
        return built
    built.ids = vrq.semantic_ids(cat, built.embeddings, built.align_run.artifact, cfg["VRQ"])
    if reach < STAGES.index("sim"):
        return built
    built.cascade = mca.Cascade(cat, built.embeddings, cfg["MCA"], fused_vectors=built.ids.item_vectors)
    built.logs = sim.simulate(cat, built.embeddings, cfg["SIM"], retrieve=built.cascade.retrieve)
    built.cascade.fit(built.logs.train_log, built.logs.train_histories)
    if reach < STAGES.index("gen"):
        return built
    built.train_stages()
    return built
