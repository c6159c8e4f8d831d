"""Bring your own data, end to end: every notebook runs on a dataset folder that is not Sweet Home 3D.

The folder is drawn by :mod:`ovkit.data.shapes` (shapes × patterns × colourways on texture
backgrounds) and handed to ``ovkit run`` exactly as a user's would be. Sized to take a few minutes.
"""

import json

import nbformat
import pytest

from ovkit import report as report_module
from ovkit import runner
from ovkit.data import shapes

# Small work per notebook: the point is that every cell runs on foreign data, not the numbers.
OVERRIDES = [
    "MCA={recall: 40, prerank: 20}",  # 48 SKUs cannot fill smoke's 100 recall slots
    "ALIGN={steps: 150}", "RQVAE_STEPS=200", "LATENCY_QUERIES=30", "PRUNE_QUERIES=20", "REPEATS=1",
    "GEN={pretrain_steps: 100, sft_steps: 50, dpo_steps: 25, eval_every: 25}", "AB={users: 100, sessions: 4}",
    "SCALE_ITEMS=2000", "SCALE_GEN={pretrain_steps: 20}", "SCALE_QUERIES=100",  # 07 ignores the folder
]


@pytest.mark.slow
@pytest.mark.notebooks
def test_every_notebook_runs_on_a_folder_dataset(kit_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    shop = shapes.write(tmp_path / "shapes")
    report = runner.run("smoke", overrides=[f"DATA_SOURCE={shop}", *OVERRIDES])

    out = kit_home / "runs" / "smoke"
    timings = json.loads((out / "timings.json").read_text())["notebooks"]
    assert len(timings) == 9 and all(t["status"] == "ok" for t in timings.values())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["00.n_skus"] == 48 and metrics["00.n_models"] == 24
    assert 0 <= metrics["01.recall@1.aligned"] <= 1 and "06.ctr.lift" in metrics
    for claim in report_module.CLAIMS:  # every key the ledger reads, recorded by the notebook it names
        for key in claim.keys:
            recorded = json.loads((out / "metrics" / f"{key[:2]}.json").read_text())
            timing = json.loads((out / "timings.json").read_text())["metrics"]
            assert key in recorded or key in timing, f"{claim.topic}: notebook {key[:2]} did not record {key}"
    text = report.read_text()
    for claim in ("multi-view alignment", "offline quality on par with MCA", "online: item CTR"):
        assert f"| {claim} |" in text
    first = nbformat.read(out / "notebooks" / "00_catalogue.ipynb", 4)
    printed = "".join(o.get("text", "") for c in first.cells if c.cell_type == "code" for o in c.outputs)
    assert "not the kit's renderer: no render settings to show" in printed
