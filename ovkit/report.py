"""The claims ledger and the run report (notebook 06, ``ovkit run``).

Every OneVision claim the kit can test is one row: what the paper says, what this run measured,
a verdict — **reproduced**, **partly** or **not** — and the metric key(s) that are the evidence.
Verdict rules are kit choices, written next to each claim (``rule``) so a reader can disagree with
them; a claim whose metrics are missing is **not measured** (run the notebook named).

``write(profile)`` puts the ledger, the key figures, the per-notebook timings, every recorded table
and metric into ``runs/<profile>/report.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .paths import current_profile, runs_dir
from .results import _write_atomic, load_figures, load_metrics, load_tables, markdown_table

REPRODUCED, PARTLY, NOT, MISSING = "reproduced", "partly", "not reproduced", "not measured"


@dataclass(frozen=True)
class Claim:
    """One paper claim and how the kit judges it."""

    topic: str
    paper: str  # what the paper reports
    keys: tuple  # metric keys the verdict reads (the first is the headline number)
    rule: str  # the verdict rule, in words
    judge: Callable  # metrics dict → (measured text, verdict)


def _interval(m: dict, key: str, pct: bool = False) -> str:
    """``key`` with its ``_ci_low`` / ``_ci_high`` companions, e.g. ``+0.002 [-0.012, +0.015]``."""
    fmt = (lambda v: f"{v:+.2%}") if pct else (lambda v: f"{v:+.3f}")
    text = fmt(m[key])
    if f"{key}_ci_low" in m:
        text += f" [{fmt(m[f'{key}_ci_low'])}, {fmt(m[f'{key}_ci_high'])}]"
    return text


def _gain(m: dict, key: str, pct: bool = False) -> tuple:
    """A gain with a 95% CI: reproduced if the CI is above 0, partly if the estimate is."""
    verdict = REPRODUCED if m[f"{key}_ci_low"] > 0 else PARTLY if m[key] > 0 else NOT
    return _interval(m, key, pct), verdict


def _alignment(m):
    ratio = m["01.aligned_over_frozen@1"]
    verdict = REPRODUCED if ratio >= 1.2 else PARTLY if ratio > 1 else NOT
    return (f"Recall@1 {m['01.recall@1.aligned']:.3f} aligned vs {m['01.recall@1.frozen']:.3f} frozen "
            f"({ratio:.2f}×)"), verdict


def _consistency(m):
    vrq = m["02.consistency@1.vrq"]
    others = {k.rsplit(".", 1)[1]: v for k, v in m.items()
              if k.startswith("02.consistency@1.") and not k.endswith(".vrq")}
    best = max(others, key=others.get) if others else None
    verdict = REPRODUCED if all(vrq > v for v in others.values()) else \
        PARTLY if vrq > min(others.values(), default=0) else NOT
    text = f"level-1 consistency {vrq:.3f}"
    if best:
        text += f" (best baseline {best} {others[best]:.3f})"
    return text, verdict


def _unique(m):
    unique, separated = m["02.unique_after_dedup.vrq"], m["02.colour_separation.vrq"]
    verdict = REPRODUCED if unique == 1 and separated >= 0.95 else PARTLY if unique == 1 else NOT
    return (f"{unique:.1%} unique ({m.get('02.icr.vrq', float('nan')):.1%} before disambiguation); "
            f"{separated:.1%} of colourway pairs get different SIDs"), verdict


def _on_par(m):
    ratio, low = m["04.hr@10_ratio_vs_mca"], m["04.hr@10_diff.dpo_vs_mca_ci_low"]
    high = m["04.hr@10_diff.dpo_vs_mca_ci_high"]
    verdict = REPRODUCED if ratio >= 0.95 and high >= 0 else PARTLY if ratio >= 0.9 else NOT
    return (f"HR@10 {m['04.hr@10.dpo']:.3f} vs {m['03.hr@10.mca']:.3f} ({ratio:.3f}×; difference "
            f"CI [{low:+.3f}, {high:+.3f}])"), verdict


def _pruning(m):
    speedup = m["05.speedup_at_1pct"]
    verdict = REPRODUCED if speedup >= 1.15 else PARTLY if speedup > 1.05 else NOT
    return (f"{speedup:.2f}× at batch 1 ({m['05.best_policy']}), HR@10 change "
            f"{0.0 - m['05.hr10_rel_loss_at_best']:+.1%}"), verdict


CLAIMS = [
    Claim("multi-view alignment", "aligning query photos with catalogue images closes the view gap",
          ("01.aligned_over_frozen@1", "01.recall@1.aligned", "01.recall@1.frozen"),
          "reproduced: aligned Recall@1 ≥ 1.2× frozen; partly: > 1×", _alignment),
    Claim("VRQ: views share shallow codes", "all views of a product share its shallow SID codes",
          ("02.consistency@1.vrq",),
          "reproduced: VRQ's level-1 consistency beats every baseline at the same budget; partly: some",
          _consistency),
    Claim("VRQ: unique IDs", "deep codes keep near-identical products apart; every product has its own ID",
          ("02.unique_after_dedup.vrq", "02.colour_separation.vrq"),
          "reproduced: all SIDs unique and ≥ 95% of colourways apart; partly: unique only", _unique),
    Claim("offline quality on par with MCA", "HR@K / MRR on par with the online cascade",
          ("04.hr@10_ratio_vs_mca", "04.hr@10_diff.dpo_vs_mca_ci_low", "04.hr@10_diff.dpo_vs_mca_ci_high"),
          "reproduced: HR@10 ≥ 0.95× MCA and the difference's CI reaches 0; partly: ≥ 0.9×", _on_par),
    Claim("SFT adds personalisation", "SFT with user context improves on pretraining",
          ("04.hr@10_diff.sft_vs_pretrain", "04.hr@10_diff.sft_vs_pretrain_ci_low"),
          "reproduced: HR@10 gain's 95% CI above 0; partly: gain > 0",
          lambda m: _gain(m, "04.hr@10_diff.sft_vs_pretrain")),
    Claim("DPO improves further", "DPO on user preferences improves on SFT",
          ("04.hr@10_diff.dpo_vs_sft", "04.hr@10_diff.dpo_vs_sft_ci_low"),
          "reproduced: HR@10 gain's 95% CI above 0; partly: gain > 0",
          lambda m: _gain(m, "04.hr@10_diff.dpo_vs_sft")),
    Claim("dynamic pruning", "+21% inference efficiency at on-par quality",
          ("05.speedup_at_1pct", "05.hr10_rel_loss_at_best", "05.best_policy"),
          "reproduced: ≥ 1.15× at ≤ 1% HR@10 loss; partly: > 1.05×", _pruning),
    Claim("online: item CTR", "+2.15% item CTR over MCA", ("06.ctr.lift", "06.ctr.lift_ci_low"),
          "reproduced: lift's 95% CI above 0; partly: lift > 0", lambda m: _gain(m, "06.ctr.lift", pct=True)),
    Claim("online: CVR", "+2.27% CVR over MCA", ("06.cvr.lift", "06.cvr.lift_ci_low"),
          "reproduced: lift's 95% CI above 0; partly: lift > 0", lambda m: _gain(m, "06.cvr.lift", pct=True)),
    Claim("online: order volume", "+3.12% orders over MCA", ("06.orders.lift", "06.orders.lift_ci_low"),
          "reproduced: lift's 95% CI above 0; partly: lift > 0",
          lambda m: _gain(m, "06.orders.lift", pct=True)),
]


def ledger(metrics: dict | None = None, profile: str | None = None) -> pd.DataFrame:
    """The claims ledger for ``metrics`` (default: everything recorded under ``profile``)."""
    m = load_metrics(profile) if metrics is None else metrics
    rows = []
    for claim in CLAIMS:
        missing = [k for k in claim.keys if m.get(k) is None]
        if missing:
            measured, verdict = f"run notebook {missing[0][:2]} (no {missing[0]})", MISSING
        else:
            measured, verdict = claim.judge(m)
        rows.append({"claim": claim.topic, "paper": claim.paper, "kit": measured, "verdict": verdict,
                     "evidence": ", ".join(f"`{k}`" for k in claim.keys[:1]), "rule": claim.rule})
    return pd.DataFrame(rows)


def write(profile: str | None = None, parameters: dict | None = None, failure: str | None = None):
    """``runs/<profile>/report.md``: the claims ledger, key figures, timings, tables and metrics."""
    import yaml

    profile = profile or current_profile()
    folder = runs_dir() / profile
    folder.mkdir(parents=True, exist_ok=True)
    metrics = load_metrics(profile)
    timings_file = folder / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    lines = [f"# ovkit run: profile `{profile}`", "", f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}.", ""]
    if failure:
        lines += ["**The run failed:**", "", "```", failure, "```", ""]
    table = ledger(metrics).set_index("claim")[["paper", "kit", "verdict", "evidence"]]
    lines += ["## Claims ledger", "", "OneVision's claims, what this run measured, and the verdict "
              "(rules: `ovkit.report.CLAIMS`).", "", markdown_table(table).strip(), ""]
    figures = load_figures(profile)
    if figures:
        lines += ["## Key figures", ""]
        for key, (path, caption) in figures.items():
            lines += [f"**{key}** — {caption}", "", f"![{key}](figures/{path.name})", ""]
    lines += ["## Notebooks", "", "| notebook | status | seconds |", "|---|---|---:|"]
    lines += [f"| {name} | {t['status']} | {t['seconds']} |" for name, t in sorted(timings.items())]
    if timings:
        lines += [f"| **total** | | {sum(t['seconds'] for t in timings.values()):.1f} |"]
    for key, text in load_tables(profile).items():
        lines += ["", f"## Table `{key}`", "", text.strip()]
    lines += ["", "## Metrics", "", "| key | value |", "|---|---:|"]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    if parameters is not None:
        dump = yaml.safe_dump(parameters, sort_keys=True).strip()
        lines += ["", "## Parameters", "", "```yaml", dump, "```"]
    path = folder / "report.md"
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
