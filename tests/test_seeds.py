"""One seed seeds everything (ovkit.seeds): derivation, unrelated worlds, sweeps that vary sources apart."""

import numpy as np
import pytest
import torch
from conftest import fake_catalogue, write_notebook

from ovkit import align, pipeline, seeds, seedstats, sim, sweep
from ovkit.runner import RunError


def test_seed_zero_keeps_the_historical_component_seeds():
    assert seeds.component_seeds({"SEED": 0}) == {"data": 0, "ALIGN": 0, "VRQ": 0, "MCA": 0, "GEN": 0,
                                                  "SIM": 0, "AB": 1}
    used = seeds.component_seeds({"SEED": 2})
    assert used["data"] == 2 and used["SIM"] == 2000 and used["AB"] == 2001 and used["GEN"] == 2000


def test_an_explicit_component_seed_wins_and_inputs_are_not_changed():
    given = {"steps": 5, "seed": 7}
    assert seeds.seeded(given, "ALIGN", 3) == {"steps": 5, "seed": 7} and given == {"steps": 5, "seed": 7}
    params = {"SEED": 1, "SIM": {"n_users": 4}}
    full = seeds.seed_all(params)
    assert full["SIM"] == {"n_users": 4, "seed": 1000} and params["SIM"] == {"n_users": 4}
    with pytest.raises(ValueError, match="unknown component"):
        seeds.component_seed(0, "RENDER")


def _tastes(seed_value: int) -> np.ndarray:
    cat, _ = fake_catalogue(n_models=20, colourways=3)
    items = cat.items.assign(fine_type=lambda t: "type" + (t["model_id"] % 4).astype(str),
                             colour=lambda t: "c" + (t["item_id"] % 5).astype(str),
                             creator=lambda t: "k" + (t["model_id"] % 3).astype(str), price=100.0)
    cfg = sim.SimConfig.from_overrides(seeds.seeded({"n_users": 400}, "SIM", seed_value))
    return sim.make_world(items, cfg).utility


def test_two_seeds_give_unrelated_shoppers():
    a, b = _tastes(0), _tastes(1)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05  # was 0.98 when SIM.seed stayed 0
    np.testing.assert_array_equal(a, _tastes(0))  # a seed is reproducible


def test_two_seeds_give_different_initial_weights():
    maps = np.zeros((4, 8, 2, 2), np.float32)
    weights = []
    for seed_value in (0, 1):
        cfg = align.AlignConfig.from_overrides(seeds.seeded({"dim": 16}, "ALIGN", seed_value))
        torch.manual_seed(cfg.seed)  # as align.train_head does
        weights.append(torch.cat([p.flatten() for p in align.make_head(cfg, maps).parameters()]))
    assert not torch.equal(*weights)


def test_pipeline_load_seeds_every_component_from_seed(monkeypatch):
    seen = {}
    monkeypatch.setattr(pipeline.data, "from_parameters", lambda p: seen.update(p) or "catalogue")
    built = pipeline.load({"N_MODELS": 1, "COLOURWAYS": 1, "QUERY_VIEWS": 1, "COLD_FRACTION": 0.1,
                           "SEED": 3, "GEN": {"pretrain_steps": 5}}, upto="catalogue")
    assert built.gen_cfg.seed == 3000 and built.gen_cfg.pretrain_steps == 5
    assert seen["SIM"]["seed"] == 3000 and seen["ALIGN"]["seed"] == 3000 and seen["AB"]["seed"] == 3001


# --- sweeps ---------------------------------------------------------------------------------------------


@pytest.fixture
def project(kit_home, monkeypatch):
    root = kit_home / "project"
    for sub in ("notebooks", "params", "sweeps"):
        (root / sub).mkdir(parents=True)
    params = ("SEED: int = 0\nDATA_SOURCE: str = ''\nALIGN: dict = {}\nSIM: dict = {}\nGEN: dict = {}\n"
              "AB: dict = {}")
    write_notebook(root / "notebooks" / "04_tiny.ipynb", params, "import ovkit\novkit.record('04.x', SEED)")
    (root / "params" / "tiny.yaml").write_text("SEED: 0\nGEN: {pretrain_steps: 3}\n")
    monkeypatch.setenv("OVKIT_ROOT", str(root))
    return root


def test_every_point_gets_its_own_component_seeds(project):
    (project / "sweeps" / "s.yaml").write_text("profile: tiny\nseeds: [0, 1, 2]\n")
    spec = sweep.load_spec("s")
    values = sweep.validate(spec)
    used = [seeds.component_seeds(values[p.id]) for p in spec.points()]
    for name in ("data", "ALIGN", "SIM", "GEN", "AB"):
        assert len({u[name] for u in used}) == 3  # all different across points
    assert values["seed-1"]["GEN"] == {"pretrain_steps": 3, "seed": 1000}  # merged with the profile's


def test_vary_sources_apart_pins_the_others_to_the_profile_seed(project):
    spec_text = "profile: tiny\nseeds: [1, 2]\nvary: [data, shoppers, models]\n"
    (project / "sweeps" / "v.yaml").write_text(spec_text)
    spec = sweep.load_spec("v")
    points = {p.id: seeds.component_seeds(p.overrides) for p in spec.points()}
    assert sorted(points) == ["data_seed-1", "data_seed-2", "models_seed-1", "models_seed-2",
                              "shoppers_seed-1", "shoppers_seed-2"]
    assert points["shoppers_seed-2"] == {"data": 0, "ALIGN": 0, "VRQ": 0, "MCA": 0, "GEN": 0,
                                         "SIM": 2000, "AB": 2001}
    assert points["models_seed-1"]["GEN"] == 1000 and points["models_seed-1"]["SIM"] == 0
    assert points["data_seed-2"]["data"] == 2 and points["data_seed-2"]["ALIGN"] == 0
    assert spec.groups() == {"data": ("base", "data"), "shoppers": ("base", "shoppers"),
                             "models": ("base", "models")}
    sweep.validate(spec)  # all six worlds differ


def test_a_sweep_whose_points_would_be_identical_refuses_to_start(project, kit_home):
    (project / "sweeps" / "dup.yaml").write_text("profile: tiny\nseeds: [0, 1]\nvary: [data, models]\n")
    with pytest.raises(RunError, match="data_seed-0 = models_seed-0"):  # seed 0 = the profile's SEED
        sweep.validate(sweep.load_spec("dup"))
    folder = kit_home / "shop"
    (project / "sweeps" / "f.yaml").write_text(f"profile: tiny\nseeds: [1, 2]\nvary: [data]\n"
                                               f"parameters: {{DATA_SOURCE: {folder}}}\n")
    values = {pid: {"DATA_SOURCE": str(folder), "SEED": s} for pid, s in (("a", 1), ("b", 2))}
    monkey = sweep.folder.is_folder_dataset
    try:
        sweep.folder.is_folder_dataset = lambda source: source == str(folder)
        with pytest.raises(RunError, match="catalogue ignores SEED"):
            sweep.check_distinct(values)  # a folder's catalogue ignores SEED: nothing would vary
        sweep.check_distinct({"a": {"DATA_SOURCE": str(folder), "SEED": 1, "SIM": {"seed": 1000}},
                              "b": {"DATA_SOURCE": str(folder), "SEED": 2, "SIM": {"seed": 2000}}})
    finally:
        sweep.folder.is_folder_dataset = monkey
    with pytest.raises(RunError, match="vary must be a list"):
        (project / "sweeps" / "bad.yaml").write_text("profile: tiny\nvary: [weather]\n")
        sweep.load_spec("bad")


def test_summary_records_seeds_pooling_and_which_source_moves_each_effect(project):
    (project / "sweeps" / "v.yaml").write_text("profile: tiny\nseeds: [1, 2, 3]\nvary: [shoppers, models]\n")
    spec = sweep.load_spec("v")
    key = "04.hr@10_diff.sft_vs_pretrain"
    spread = {"shoppers": 0.001, "models": 0.02}  # models move the effect far more than shoppers
    for point in spec.points():
        value = 0.02 + spread[point.source] * (point.seed - 2)
        metrics = {key: value, f"{key}_ci_low": value - 0.004, f"{key}_ci_high": value + 0.004}
        path = spec.folder / point.id / "status.json"
        path.parent.mkdir(parents=True)
        path.write_text(sweep.json.dumps({"status": "ok", "metrics": metrics, "commit": "abc"}))
    summary = sweep.summarise(spec)
    assert summary["method"] == "random-effects" and set(summary["cells"]) == {"shoppers", "models"}
    point = summary["points"]["models_seed-3"]
    assert point["component_seeds"]["GEN"] == 3000 and point["component_seeds"]["SIM"] == 0
    row = next(r for r in summary["cells"]["models"]["ledger"] if r["key"] == key)
    assert row["method"] == "random-effects" and row["tau2"] > 0
    assert set(row["seed_verdicts"]) == {"1", "2", "3"}
    variance = seedstats.variance_table(summary)
    assert variance.loc["SFT adds personalisation", "largest"] == "models"
    assert variance.loc["SFT adds personalisation", "τ² models"] > variance.loc["SFT adds personalisation",
                                                                                  "τ² shoppers"]
    text = sweep.summary_markdown(summary)
    assert "Which source of variation moves each effect" in text and "random-effects" in text
