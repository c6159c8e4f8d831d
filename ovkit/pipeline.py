"""Everything notebooks 00-04 build, loaded from the stage cache in one call (notebooks 05-06, benchmarks).

``load(params)`` takes the notebooks' parameter names (``N_MODELS``, ``ALIGN``, ``GEN``, …, as in a
``params/<profile>.yaml``) and returns the catalogue, the aligned embeddings, the SIDs, the fitted
cascade, the simulator's logs and the three OneVision stages. Missing stages are built on demand,
exactly as the notebooks build them, so the same parameters always give the same objects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

REQUIRED = ("N_MODELS", "COLOURWAYS", "QUERY_VIEWS", "COLD_FRACTION", "SEED")
DEFAULTS = {"RENDER": {}, "DATA_SOURCE": "", "BACKBONE": "tf_efficientnet_lite0", "WEIGHTS": "offline",
            "ALIGN": {}, "DEVICE": "", "VRQ": {}, "SIM": {}, "MCA": {}, "GEN": {}}


@dataclass
class Pipeline:
    """What notebooks 00-04 produce, for one set of parameters."""

    params: dict
    catalogue: object  # data.Catalogue
    maps: np.ndarray  # the feature maps the alignment head reads (frozen trunk, or its tuned copy)
    align_run: dict  # align.aligned(...): head, embeddings, tokens, artifact
    ids: object  # vrq.SemanticIDs
    cascade: object  # mca.Cascade, fitted on the training logs
    logs: object  # sim.Logs
    stages: dict  # "pretrain" / "sft" / "dpo" → gen.Trained (empty when loaded with train=False)
    gen_cfg: object  # gen.GenConfig
    device: str  # where the models run
    _variants: dict = dataclasses.field(default_factory=dict, repr=False)  # cascades on other indexes

    @property
    def embeddings(self) -> np.ndarray:
        return self.align_run["embeddings"]

    @property
    def tokens(self) -> np.ndarray:
        return np.asarray(self.align_run["tokens"], np.float32)

    @property
    def model(self):
        """The final OneVision model (after DPO)."""
        return self.stages["dpo"].model

    def cascade_on(self, vectors: str):
        """The cascade with its recall index on ``"catalogue"`` views or ``"fused"`` SKU vectors (the
        ones OneVision's prior reads), fitted on the same logs; the configured one is ``cascade``."""
        from . import mca

        if vectors == self.cascade.cfg.vectors:
            return self.cascade
        if vectors not in self._variants:
            cfg = mca.MCAConfig.from_overrides({**dataclasses.asdict(self.cascade.cfg), "vectors": vectors})
            variant = mca.Cascade(self.catalogue, self.embeddings, cfg, fused_vectors=self.ids.item_vectors)
            self._variants[vectors] = variant.fit(self.logs.train_log, self.logs.train_histories)
        return self._variants[vectors]

    def cascade_results(self, split: str = "test") -> tuple:
        """The cascade and visual-only retrieval on both indexes, on the test (or val) sessions.

        Returns (table, ranked): rows ``mca``, ``visual_only`` (catalogue index), ``mca_fused``,
        ``visual_only_fused`` with ``mca.offline_eval``'s columns, and each row's top-10 lists.
        """
        import pandas as pd

        from . import mca

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
        from . import vrq

        model = self.stages[stage].model
        if vectors == "fused":
            return model
        if vectors != "catalogue":
            raise ValueError(f"vectors must be 'catalogue' or 'fused', got {vectors!r}")
        return model.with_item_vectors(vrq.catalogue_only_vectors(self.catalogue, self.embeddings))

    def queries(self, split: str = "test", with_user: bool = True):
        """gen.Queries of the test (or validation) sessions."""
        from . import gen

        return gen.session_queries(self.logs, self.embeddings, self.tokens, self.gen_cfg.history,
                                   with_user=with_user, split=split)


def load(params: dict, train: bool = True) -> Pipeline:
    """Load (or build) notebooks 00-04's artifacts for notebook-style ``params``.

    Names outside the pipeline's (``PRUNE_GRID``, …) are ignored, so a whole profile can be passed.
    ``train=False`` stops before OneVision's stages (notebook 04 trains them in its own story).
    """
    import torch

    from . import align, backbone, data, gen, mca, sim, vrq

    if missing := [name for name in REQUIRED if name not in params]:
        raise ValueError(f"pipeline.load needs the parameter(s) {missing} (see params/default.yaml)")
    p = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS or k in REQUIRED}}
    device = p["DEVICE"] or ("cuda" if torch.cuda.is_available() else "cpu")
    # settings first: a typo fails before anything is built
    gen_cfg, sim_cfg = gen.GenConfig.from_overrides(p["GEN"]), sim.SimConfig.from_overrides(p["SIM"])
    mca_cfg = mca.MCAConfig.from_overrides(p["MCA"])
    tune = align.AlignConfig.from_overrides(p["ALIGN"]).tune_blocks
    cat = data.catalogue(n_models=p["N_MODELS"], colourways=p["COLOURWAYS"], query_views=p["QUERY_VIEWS"],
                         cold_fraction=p["COLD_FRACTION"], render=p["RENDER"], source=p["DATA_SOURCE"],
                         seed=p["SEED"])
    maps, artifact = backbone.cached_maps(cat, p["BACKBONE"], p["WEIGHTS"], device=device)
    if tune:  # the head was trained on the partly fine-tuned trunk's maps (notebook 01)
        maps, artifact = backbone.cached_maps(cat, p["BACKBONE"], p["WEIGHTS"], tune_blocks=tune,
                                              device=device)
    run = align.aligned(cat, maps, artifact, p["ALIGN"], device)
    ids = vrq.semantic_ids(cat, run["embeddings"], run["artifact"], p["VRQ"])
    cascade = mca.Cascade(cat, run["embeddings"], mca_cfg, fused_vectors=ids.item_vectors)
    logs = sim.simulate(cat, run["embeddings"], sim_cfg, retrieve=cascade.retrieve)
    cascade.fit(logs.train_log, logs.train_histories)
    stages = gen.train_stages(cat, run, ids, logs, p["GEN"], device) if train else {}
    return Pipeline(p, cat, maps, run, ids, cascade, logs, stages, gen_cfg, device)
