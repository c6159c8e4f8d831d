"""pipeline.load: every stopping point, the cache reused, settings checked before anything is built."""

import dataclasses
import types

import numpy as np
import pytest
from conftest import fake_world

from ovkit import fusion, gen, mca, pipeline
from ovkit.data import shapes

MCA = mca.MCAConfig(recall=40, prerank=20)
TINY = {"N_MODELS": 0, "COLOURWAYS": 0, "QUERY_VIEWS": 0, "COLD_FRACTION": 0.0, "SEED": 0,
        "RENDER": {"image_size": 32}, "ALIGN": {"steps": 4, "batch_models": 4, "dim": 16},
        "VRQ": {"levels": [4, 4], "opq_codes": 1, "opq_size": 4},
        "SIM": {"n_users": 12, "train_sessions": 4, "test_sessions": 1, "explore_pool": 10},
        "MCA": {"recall": 14, "prerank": 10},
        "GEN": {"pretrain_steps": 2, "sft_steps": 1, "dpo_steps": 1, "batch": 8, "eval_every": 1,
                "d_model": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1}}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return shapes.write(tmp_path_factory.mktemp("shapes"), n_models=8, colourways=2, query_views=4)


def test_each_stopping_point_loads_its_stages_and_reuses_the_cache(kit_home, shop):
    params = {**TINY, "DATA_SOURCE": str(shop), "PRUNE_GRID": [], "unrelated": 1}
    expected = {"catalogue": "catalogue", "align": "align_run", "vrq": "ids", "sim": "logs", "gen": "stages"}
    fields = ["catalogue", "align_run", "ids", "logs", "stages"]
    for i, upto in enumerate(pipeline.STAGES):
        built = pipeline.load(params, upto=upto)
        present = [f for f in fields if getattr(built, f) not in (None, {})]
        assert present == fields[: i + 1] and expected[upto] == present[-1], upto
    assert built.catalogue.summary()["n_skus"] == 16 and set(built.stages) == {"pretrain", "sft", "dpo"}
    again = pipeline.load(params)
    assert not again.catalogue.artifact.fresh and not again.align_run.artifact.fresh
    assert not again.ids.artifact.fresh and not again.stages["dpo"].artifact.fresh
    np.testing.assert_array_equal(again.ids.codes, built.ids.codes)
    # a stage's ranked lists: pretraining served without history (as validated), SFT/DPO with it
    without_user = built.queries("val", with_user=False)
    beam = built.gen_cfg.beam  # the run's GEN beam, not the cached model's own
    pretrain = gen.beam_search(built.stages["pretrain"].model, without_user, 10, beam=beam)[0]
    np.testing.assert_array_equal(built.ranked("pretrain", "val"), pretrain)
    with_user = gen.beam_search(built.model, built.queries("val"), 10, beam=beam)[0]
    np.testing.assert_array_equal(built.ranked("dpo", "val"), with_user)


def test_settings_and_names_are_checked_before_anything_is_built(kit_home):
    for bad, message in (({"GEN": {"stepz": 1}}, "unknown GEN"), ({"VRQ": {"levels": "x"}}, "VRQ levels"),
                         ({"ALIGN": {"steps": "many"}}, "ALIGN steps")):
        with pytest.raises(ValueError, match=message):
            pipeline.load({"N_MODELS": 10, **bad})
    with pytest.raises(ValueError, match="upto must be one of catalogue, align, vrq, sim, gen"):
        pipeline.load({}, upto="mca")
    assert not (kit_home / "artifacts").exists()


def test_a_parameter_left_out_takes_the_registrys_default_as_the_notebooks_do(kit_home, shop, monkeypatch):
    """One registry (ovkit.config.PARAMETERS): a default changed there reaches pipeline.load, the
    catalogue's arguments and the runner's checks."""
    from ovkit import config, runner

    registry = config.PARAMETERS
    monkeypatch.setitem(registry, "COLOURWAYS", dataclasses.replace(registry["COLOURWAYS"], default=1))
    monkeypatch.setitem(registry, "MCA", dataclasses.replace(registry["MCA"], default={"recall": 70}))
    monkeypatch.setitem(registry, "REPEATS", dataclasses.replace(registry["REPEATS"], check=lambda v: v >= 5,
                                                                 wanted=">= 5"))
    params = {k: v for k, v in TINY.items() if k not in ("COLOURWAYS", "MCA")}
    built = pipeline.load({**params, "DATA_SOURCE": str(shop)}, upto="catalogue")
    assert built.params["COLOURWAYS"] == 1 and built.params["MCA"]["recall"] == 70
    assert config.settings("MCA").recall == 70
    assert runner.value_problems("REPEATS", 3) == ["REPEATS=3 must be >= 5"]


@pytest.fixture(scope="module")
def fake():
    return fake_world()


def test_pipeline_compares_both_indexes_and_picks_the_reference_on_validation(fake):
    cat, emb, logs = fake
    cascade = mca.Cascade(cat, emb, MCA).fit(logs.train_log, logs.train_histories)
    ids = types.SimpleNamespace(item_vectors=fusion.item_vectors(cat, emb))
    built = pipeline.Pipeline({}, "cpu", None, cat, align_run=types.SimpleNamespace(embeddings=emb), ids=ids,
                              cascade=cascade, logs=logs)
    table, ranked = built.cascade_results()
    assert list(table.index) == ["mca", "visual_only", "mca_fused", "visual_only_fused"] == list(ranked)
    assert built.cascade_on("fused").cfg.vectors == "fused" and built.cascade_on("catalogue") is cascade
    index, chosen, scores = built.reference_cascade()
    val = built.cascade_results("val")[0]
    assert scores == {"catalogue": val.loc["mca", "hr@10"], "fused": val.loc["mca_fused", "hr@10"]}
    assert index == max(scores, key=scores.get) and chosen is built.cascade_on(index)

