"""The claims ledger and the run report (notebook 06, ``ovkit run``).

Every OneVision claim the kit can test is one row: what the paper says and its number, what this run
measured, a verdict — **reproduced** (or *reproduced, larger than the paper*), **partly**,
**inconclusive** or **not reproduced**; **invalid** when an estimate lies outside its own interval — and the
headline metric key. Verdicts come from two generic rules on 95% confidence intervals,
``judge_effect`` (an effect in the claim's direction) and ``judge_noninferior`` ("on par"), plus one
rule for a deterministic catalogue property; each claim states its rule, margin and tolerance in words
(``rule``) so a reader can disagree. A claim whose metrics are missing is **not measured** (run the
notebook named).

``write(profile)`` puts the ledger, the key figures, the per-notebook timings, every recorded table
and metric into ``runs/<profile>/report.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from . import resources
from .paths import current_profile, current_run, runs_dir
from .results import (
    format_value,
    is_timing,
    load_figures,
    load_metrics,
    load_tables,
    markdown_table,
    provenance_warning,
    read_timings,
    run_commits,
    write_atomic,
)
from .results import (
    interval_keys as _ci_keys,
)

REPRODUCED, PARTLY, INCONCLUSIVE, NOT = "reproduced", "partly", "inconclusive", "not reproduced"
LARGER = "reproduced, larger than the paper"  # the paper's direction, beyond the paper's size
MISSING = "not measured"
INVALID = "invalid"  # the numbers contradict themselves (an estimate outside its own interval)
VERDICTS = (REPRODUCED, PARTLY, INCONCLUSIVE, NOT)
NO_NUMBER = "— (no number)"

__all__ = ["REPRODUCED", "LARGER", "PARTLY", "INCONCLUSIVE", "NOT", "MISSING", "INVALID", "VERDICTS", "Claim",
           "CLAIMS", "is_reproduced", "judge_effect", "judge_noninferior", "ledger", "write"]

MINIMUM = 0.01  # smallest effect of interest for claims without a paper number (1 point of a rate)
ON_PAR_MARGIN = 0.05  # non-inferiority margin, relative to the reference
ICR_TOLERANCE = 0.01  # run-to-run spread of ICR seen across machines (97.0% vs 97.6%)
SEPARATION = 0.95  # share of colourway pairs that must get different SIDs
MAX_PRUNING_LOSS = 0.01  # relative HR@10 loss on test that still counts as on-par quality
RETENTION_TARGET = 0.70  # share of its in-distribution Recall@1 the head must keep under held-out conditions
RETENTION_MARGIN = 0.05  # how far (absolute) its retention may fall below the frozen backbone's


@dataclass(frozen=True)
class Claim:
    """One paper claim and how the kit judges it."""

    topic: str
    paper: str  # what the paper reports
    paper_value: str  # the paper's number as text ("+2.15%", "1.21×", "on par", NO_NUMBER)
    keys: tuple  # metric keys the verdict needs (the first is the headline number)
    rule: str  # the verdict rule, in words
    judge: Callable  # metrics dict → (measured text, verdict)
    why: str = ""  # the contrast notebook 08's factorial measures for it (its "why" column), if any


def is_reproduced(verdict: str) -> bool:
    """Reproduced, at the paper's size or larger."""
    return verdict in (REPRODUCED, LARGER)


def judge_effect(est: float, low: float, high: float, paper: float | None = None,
                 minimum: float | None = None) -> str:
    """Verdict on an effect with a 95% CI [low, high], positive in the claim's direction.

    Direction and size are judged apart. Direction: the CI above 0. Size, with the paper's value P:
    P inside the CI → reproduced; the CI above P → reproduced, *larger* than the paper (LARGER); the
    CI below P → partly. A CI that reaches 0: inconclusive if it also holds P (or more), not
    reproduced if it stays below P. Without P, a smallest effect of interest ``minimum`` sets the
    size: the CI above 0 and the *estimate* at least ``minimum`` → reproduced, the estimate below it →
    partly; a CI reaching 0 is inconclusive if its high end reaches ``minimum``, else not reproduced.

    Args:
        paper: the paper's effect (> 0), or None.
        minimum: the smallest effect of interest (> 0); give exactly one of ``paper`` and ``minimum``.

    Returns:
        One of ``VERDICTS`` or ``LARGER``; a CI with a NaN end (an undefined resample) is inconclusive.

    Raises:
        ValueError: an estimate outside its own interval, or a CI whose ends are swapped.
    """
    if (paper is None) == (minimum is None):
        raise ValueError("give the paper's value or a smallest effect of interest, exactly one")
    target = paper if paper is not None else minimum
    if not target > 0:
        raise ValueError(f"the paper's value or minimum must be > 0, got {target}")
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if low > high:
        raise ValueError(f"a CI's low end {low} is above its high end {high}")
    slack = 1e-9 * max(1.0, abs(est))  # float rounding of a recorded value
    if not low - slack <= est <= high + slack:
        raise ValueError(f"the estimate {est:.6g} lies outside its own interval [{low:.6g}, {high:.6g}]")
    if low > 0:
        if paper is None:
            return REPRODUCED if est >= minimum else PARTLY
        return LARGER if low > paper else REPRODUCED if high >= paper else PARTLY
    return INCONCLUSIVE if high >= target else NOT


def judge_noninferior(intervals: dict, margin: float) -> str:
    """Verdict on "on par": relative differences (system − reference) / reference with 95% CIs.

    A metric is non-inferior if its CI's low end is ≥ −margin, inferior if its high end is < −margin,
    undetermined otherwise.

    Args:
        intervals: metric name → (estimate, low, high).
        margin: the non-inferiority margin (> 0), e.g. 0.05 for 5%.

    Returns:
        not reproduced if any metric is inferior; reproduced if all are non-inferior; partly if some
        are; inconclusive if none is determined.
    """
    if not intervals:
        raise ValueError("no metrics to judge")
    lows = [low for _, low, _ in intervals.values()]
    highs = [high for _, _, high in intervals.values()]
    if any(high < -margin for high in highs):
        return NOT
    fine = sum(low >= -margin for low in lows)
    return REPRODUCED if fine == len(lows) else PARTLY if fine else INCONCLUSIVE


def _ci(m: dict, key: str) -> tuple:
    return tuple(m[k] for k in _ci_keys(key))


def _interval(m: dict, key: str, pct: bool = False) -> str:
    """``key`` with its ``_ci_low`` / ``_ci_high`` companions, e.g. ``+0.002 [-0.012, +0.015]``."""
    fmt = (lambda v: f"{v:+.2%}") if pct else (lambda v: f"{v:+.3f}")
    text = fmt(m[key])
    if f"{key}_ci_low" in m:
        text += f" [{fmt(m[f'{key}_ci_low'])}, {fmt(m[f'{key}_ci_high'])}]"
    return text


def _effect(key: str, paper: float | None = None, minimum: float | None = None, pct: bool = False):
    """A judge for one effect key with CI companions."""
    return lambda m: (_interval(m, key, pct), judge_effect(*_ci(m, key), paper=paper, minimum=minimum))


def _alignment(m):
    key = "01.recall@1_diff.aligned_vs_frozen"
    text = (f"Recall@1 {m['01.recall@1.aligned']:.3f} vs {m['01.recall@1.frozen']:.3f} frozen: "
            f"{_interval(m, key)}")
    if "01.view_gap.aligned" in m and "01.view_gap.frozen" in m:  # context only, not judged
        text += f"; view gap {m['01.view_gap.aligned']:+.3f} vs {m['01.view_gap.frozen']:+.3f}"
    return text, judge_effect(*_ci(m, key), minimum=MINIMUM)


def _consistency(m):
    key, best = "02.consistency@1_diff.vrq_vs_best", m["02.best_baseline@1"]
    text = f"level-1 consistency {m['02.consistency@1.vrq']:.3f}"
    if f"02.consistency@1.{best}" in m:
        text += f" vs {m[f'02.consistency@1.{best}']:.3f}"
    text += f" {best} (best baseline): {_interval(m, key)}"
    return text, judge_effect(*_ci(m, key), minimum=MINIMUM)


def _baseline_icr(m: dict) -> dict:
    """Every recorded ``02.icr.<name>`` other than VRQ's, by name."""
    return {k.removeprefix("02.icr."): v for k, v in m.items()
            if k.startswith("02.icr.") and k != "02.icr.vrq"}


def _unique(m):
    icr, separated, others = m["02.icr.vrq"], m["02.colour_separation.vrq"], _baseline_icr(m)
    if not others:
        return "run notebook 02 (no baseline 02.icr.<name>)", MISSING
    best = max(others, key=others.get)
    d = icr - others[best]
    if abs(d) < ICR_TOLERANCE:
        verdict = INCONCLUSIVE
    elif d > 0:
        verdict = REPRODUCED if separated >= SEPARATION else PARTLY
    else:  # VRQ is below the best baseline; partly if it still clearly beats one
        verdict = PARTLY if any(icr - v >= ICR_TOLERANCE for v in others.values()) else NOT
    return (f"{icr:.1%} unique before disambiguation vs {others[best]:.1%} {best} (best baseline); "
            f"{separated:.1%} of colourway pairs get different SIDs"), verdict


def _on_par(m):
    keys = {"HR@10": "04.hr@10_rel_diff.dpo_vs_mca", "MRR@10": "04.mrr@10_rel_diff.dpo_vs_mca"}
    text = ""
    if "04.hr@10.dpo" in m and "04.hr@10.mca_reference" in m:
        text = f"HR@10 {m['04.hr@10.dpo']:.3f} vs {m['04.hr@10.mca_reference']:.3f} MCA"
        text += f" ({m['04.reference_mca']}); " if "04.reference_mca" in m else "; "
    text += "DPO − MCA relative: " + ", ".join(f"{name} {_interval(m, key, pct=True)}"
                                               for name, key in keys.items())
    return text, judge_noninferior({name: _ci(m, key) for name, key in keys.items()}, ON_PAR_MARGIN)


def _pruning(m):
    speedup, low, high = _ci(m, SPEEDUP_KEY)
    loss = m["05.hr10_rel_loss_at_best"]
    verdict = judge_effect(speedup - 1, low - 1, high - 1, paper=0.21)
    if is_reproduced(verdict) and loss > MAX_PRUNING_LOSS:  # the speed was bought with quality
        verdict = PARTLY
    chosen = f", chosen on {m['05.chosen_on']}" if "05.chosen_on" in m else ""
    median = ""
    if "05.speedup_at_1pct" in m:
        median = f"; median query {m['05.speedup_at_1pct']:.2f}×"
        if "05.speedup_at_1pct_ci_low" in m:
            median += f" [{m['05.speedup_at_1pct_ci_low']:.2f}, {m['05.speedup_at_1pct_ci_high']:.2f}]"
    return (f"total time {speedup:.2f}× [{low:.2f}, {high:.2f}] at batch 1 ({m['05.best_policy']}{chosen}"
            f"{median}), HR@10 change on test {0.0 - loss:+.1%}"), verdict


def _heldout(m):
    key = "01.heldout_ratio_diff.aligned_vs_frozen"
    ratio, diff = _ci(m, "01.heldout_ratio.aligned"), _ci(m, key)
    checks = {"retention": tuple(v - RETENTION_TARGET for v in ratio),
              "vs frozen": tuple(v + RETENTION_MARGIN for v in diff)}
    text = (f"the aligned head keeps {ratio[0]:.0%} [{ratio[1]:.0%}, {ratio[2]:.0%}] of its Recall@1 under "
            f"held-out conditions (R@1 {m['01.recall@1.aligned.heldout']:.3f}), the frozen backbone "
            f"{m['01.heldout_ratio.frozen']:.0%}; difference {_interval(m, key)}")
    return text, judge_noninferior(checks, 0.0)


SPEEDUP_KEY = "05.speedup_total_at_1pct"  # throughput: Σ unpruned ms / Σ pruned ms over the timed queries

COLD_KEYS = {"exact-SKU recall@10": "04.recall_exact@10_rel_diff.cold.dpo_cold_prior_vs_visual_only",
             "HR@10": "04.hr@10_rel_diff.cold.dpo_cold_prior_vs_visual_only"}


def _cold(m):
    bonus = f", cold prior bonus {m['04.cold_prior_bonus']:g}" if "04.cold_prior_bonus" in m else ""
    text = (f"exact-SKU recall@10 on new products {m['04.recall_exact@10.dpo_cold_prior.cold']:.3f} "
            f"(OneVision DPO{bonus}) vs {m['03.recall_exact@10.visual_only.cold']:.3f} visual-only; "
            "relative: "
            + ", ".join(f"{name} {_interval(m, key, pct=True)}" for name, key in COLD_KEYS.items()))
    return text, judge_noninferior({name: _ci(m, key) for name, key in COLD_KEYS.items()}, ON_PAR_MARGIN)


def _effect_rule(what: str, paper: str | None = None) -> str:
    """The judge_effect rule in words, for ``what`` against the paper's value or MINIMUM."""
    if paper:
        return (f"95% CI of the {what}: above 0 and holding {paper} → reproduced; above {paper} → "
                f"reproduced, larger than the paper; above 0 but below {paper} → partly; holding 0 and "
                f"{paper} (or more) → inconclusive; reaching 0 but below {paper} → not reproduced; an "
                "estimate outside its CI → invalid")
    m = f"+{MINIMUM:g}"
    return (f"95% CI of the {what}: above 0 with the estimate ≥ {m} (smallest effect of interest) → "
            f"reproduced; above 0 with the estimate below {m} → partly; holding 0 and reaching {m} → "
            f"inconclusive; reaching 0 but below {m} → not reproduced; an estimate outside its CI → invalid")


CLAIMS = [
    Claim("multi-view alignment", "aligning query photos with catalogue images closes the multi-view gap",
          NO_NUMBER, (*_ci_keys("01.recall@1_diff.aligned_vs_frozen"), "01.recall@1.aligned",
                      "01.recall@1.frozen"),
          _effect_rule("Recall@1 difference aligned − frozen (over SKUs)") + "; the view gap is context",
          _alignment),
    Claim("VRQ: views share shallow codes", "all views of a product share its shallow SID codes", NO_NUMBER,
          (*_ci_keys("02.consistency@1_diff.vrq_vs_best"), "02.best_baseline@1", "02.consistency@1.vrq"),
          _effect_rule("level-1 consistency difference VRQ − best baseline (over SKUs)"), _consistency),
    Claim("VRQ: unique IDs, near-duplicates apart",
          "deep codes keep near-identical products apart; every product has its own ID", NO_NUMBER,
          ("02.icr.vrq", "02.colour_separation.vrq"),
          f"deterministic, tolerance {ICR_TOLERANCE:g} (run-to-run spread): d = VRQ's ICR before "
          f"disambiguation − the best baseline's; |d| < {ICR_TOLERANCE:g} → inconclusive; d ≥ "
          f"{ICR_TOLERANCE:g} and ≥ {SEPARATION:.0%} of colourway pairs apart → reproduced, else partly; "
          f"d ≤ −{ICR_TOLERANCE:g} → partly if VRQ beats some baseline by ≥ {ICR_TOLERANCE:g}, else not "
          "reproduced", _unique),
    Claim("offline quality on par with MCA", "HitRate and MRR on par with the online cascade", "on par",
          (*_ci_keys("04.hr@10_rel_diff.dpo_vs_mca"), *_ci_keys("04.mrr@10_rel_diff.dpo_vs_mca")),
          f"non-inferiority, margin {ON_PAR_MARGIN:.0%} relative, on HR@10 and MRR@10 (DPO − MCA) / MCA: "
          f"a metric passes if its 95% CI's low end ≥ −{ON_PAR_MARGIN:.0%}, fails if its high end < "
          f"−{ON_PAR_MARGIN:.0%}; any fails → not reproduced; all pass → reproduced; some pass → partly; "
          "none decided → inconclusive", _on_par, "gap_vs_mca"),
    Claim("SFT adds personalisation", "SFT with user context improves on pretraining", NO_NUMBER,
          _ci_keys("04.hr@10_diff.sft_vs_pretrain"), _effect_rule("HR@10 difference SFT − pretrain"),
          _effect("04.hr@10_diff.sft_vs_pretrain", minimum=MINIMUM), "sft_gain"),
    Claim("DPO improves further", "DPO on user preferences improves on SFT", NO_NUMBER,
          _ci_keys("04.hr@10_diff.dpo_vs_sft"), _effect_rule("HR@10 difference DPO − SFT"),
          _effect("04.hr@10_diff.dpo_vs_sft", minimum=MINIMUM), "dpo_gain"),
    Claim("dynamic pruning", "+21% inference efficiency at on-par quality", "1.21×",
          (*_ci_keys(SPEEDUP_KEY), "05.hr10_rel_loss_at_best", "05.best_policy"),
          _effect_rule("total-time speed-up at batch 1 (Σ unpruned ms / Σ pruned ms, queries and timing "
                       "rounds resampled) minus 1", "+0.21 (1.21×)")
          + f"; a reproduced speed-up with a relative HR@10 loss on test > {MAX_PRUNING_LOSS:.0%} becomes "
          "partly", _pruning),
    Claim("online: item CTR", "+2.15% item CTR over MCA", "+2.15%", _ci_keys("06.ctr.lift"),
          _effect_rule("CTR lift", "+2.15%"), _effect("06.ctr.lift", paper=0.0215, pct=True)),
    Claim("online: CVR", "+2.27% CVR over MCA", "+2.27%", _ci_keys("06.cvr.lift"),
          _effect_rule("CVR lift", "+2.27%"), _effect("06.cvr.lift", paper=0.0227, pct=True)),
    Claim("online: order volume", "+3.12% orders over MCA", "+3.12%", _ci_keys("06.orders.lift"),
          _effect_rule("order lift", "+3.12%"), _effect("06.orders.lift", paper=0.0312, pct=True)),
    Claim("kit: alignment holds under unseen conditions",
          "(the kit's own claim) the aligned head keeps its recall on shoppers' photos taken under "
          "conditions no training photo had, as well as the frozen backbone does", NO_NUMBER,
          (*_ci_keys("01.heldout_ratio.aligned"), *_ci_keys("01.heldout_ratio_diff.aligned_vs_frozen"),
           "01.recall@1.aligned.heldout", "01.heldout_ratio.frozen"),
          f"two non-inferiority checks on 95% CIs (SKUs resampled): retention = held-out R@1 / "
          f"in-distribution R@1 ≥ {RETENTION_TARGET:.0%}, and retention aligned − frozen ≥ "
          f"−{RETENTION_MARGIN:g}; a check passes if its CI's low end clears the bar and fails if its "
          "high end is below it; any fails → not reproduced; both pass → reproduced; one passes → "
          "partly; none decided → inconclusive", _heldout),
    Claim("kit: new products found as well as by visual retrieval",
          "(the kit's own claim) OneVision finds the photographed SKU among products with no training "
          "photo or log as often as plain visual retrieval does", NO_NUMBER,
          (*_ci_keys(COLD_KEYS["exact-SKU recall@10"]), *_ci_keys(COLD_KEYS["HR@10"]),
           "04.recall_exact@10.dpo_cold_prior.cold", "03.recall_exact@10.visual_only.cold"),
          f"non-inferiority, margin {ON_PAR_MARGIN:.0%} relative, on exact-SKU recall@10 and HR@10 of "
          "cold test sessions, (OneVision with the cold prior bonus chosen on validation − visual-only) / "
          f"visual-only: a metric passes if its 95% CI's low end ≥ −{ON_PAR_MARGIN:.0%}, fails if its high "
          f"end < −{ON_PAR_MARGIN:.0%}; any fails → not reproduced; both pass → reproduced; one passes → "
          "partly; none decided → inconclusive", _cold),
]


WHY_TEXT = {"gap_vs_mca": "OneVision − reference cascade", "sft_gain": "SFT − pretrain",
            "dpo_gain": "DPO − SFT"}


def why_note(m: dict, contrast: str) -> str:
    """The "why" column of a claim: its contrast in every cell of notebook 08's factorial (SID layout ×
    logging exposure, ``08.<contrast>.<layout>.<exposure>`` with intervals) and what they say; empty
    where notebook 08 has not recorded it."""
    prefix = f"08.{contrast}."
    cells = sorted(k[len(prefix):] for k in m
                   if k.startswith(prefix) and not k.endswith(("_ci_low", "_ci_high")))
    if not cells:
        return ""
    values = {cell: _ci(m, prefix + cell) for cell in cells}
    shown = "; ".join(f"{cell.replace('.', '/')} {_interval(m, prefix + cell)}" for cell in cells)
    above = [c.replace(".", "/") for c, (_, low, _) in values.items() if low > 0]
    holding = [c.replace(".", "/") for c, (_, low, high) in values.items() if low <= 0 <= high]
    if contrast == "gap_vs_mca":
        said = (f"the gap's interval holds 0 in {', '.join(holding)}" if holding
                else "OneVision stays below the cascade in every cell" if not above
                else f"OneVision above the cascade in {', '.join(above)}")
    else:
        said = f"above 0 in {', '.join(above)}" if above else "no cell's interval lies above 0"
    seeds = m.get("08.why_seeds")
    pooled = f"{seeds} seed{'s' if seeds != 1 else ''}" if seeds is not None else "seeds ?"
    return f"{WHY_TEXT[contrast]} per cell (notebook 08, {pooled}): {shown} → {said}"


def ledger(metrics: dict | None = None, profile: str | None = None) -> pd.DataFrame:
    """The claims ledger for ``metrics`` (default: everything recorded under ``profile``).

    A claim whose numbers contradict themselves (an estimate outside its own interval) is shown as
    ``invalid`` with the reason, so the rest of the ledger (and the run's report) still stands.
    """
    m = load_metrics(profile) if metrics is None else metrics
    rows = []
    for claim in CLAIMS:
        missing = [k for k in claim.keys if m.get(k) is None]
        if missing:
            measured, verdict = f"run notebook {missing[0][:2]} (no {missing[0]})", MISSING
        else:
            try:
                measured, verdict = claim.judge(m)
            except ValueError as err:
                measured, verdict = f"the recorded numbers are invalid: {err}", INVALID
        rows.append({"claim": claim.topic, "paper": claim.paper, "paper_value": claim.paper_value,
                     "kit": measured, "verdict": verdict, "evidence": f"`{claim.keys[0]}`",
                     "rule": claim.rule, "why": why_note(m, claim.why) if claim.why else ""})
    return pd.DataFrame(rows)


def write(profile: str | None = None, parameters: dict | None = None, failure: str | None = None,
          run: str | None = None):
    """``runs/<run>/report.md``: the claims ledger, key figures, timings, tables and metrics.

    ``run`` is the run folder under ``runs/`` (default: the profile's, ``runs/<profile>``).
    """
    import yaml

    run = run or profile or current_run()
    profile = profile or current_profile()
    folder = runs_dir() / run
    folder.mkdir(parents=True, exist_ok=True)
    metrics = load_metrics(run)
    timings = read_timings(folder)["notebooks"]
    title = f"profile `{profile}`" if run == profile else f"`{run}` (profile `{profile}`)"
    lines = [f"# ovkit run: {title}", "", f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}.", ""]
    if failure:
        lines += ["**The run failed:**", "", "```", failure, "```", ""]
    if warning := provenance_warning(run):
        lines += [f"**Warning:** {warning}", ""]
    lines += [f"Code: commit {', '.join(run_commits(run)) or 'unknown'}.", ""]
    columns = ["paper", "paper_value", "kit", "verdict", "rule", "evidence", "why"]
    table = ledger(metrics).set_index("claim")[columns]
    lines += ["## Claims ledger", "", "OneVision's claims, the paper's number beside what this run measured, "
              "the verdict and the rule that gave it (`ovkit.report.CLAIMS`); *why*: the claim's contrast in "
              "each cell of notebook 08's controlled experiments, where it ran.", "",
              markdown_table(table).strip(), ""]
    figures = load_figures(run)
    if figures:
        lines += ["## Key figures", ""]
        for key, (path, caption) in figures.items():
            lines += [f"**{key}** — {caption}", "", f"![{key}](figures/{path.name})", ""]
    lines += ["## Notebooks", "", "| notebook | status | seconds |", "|---|---|---:|"]
    lines += [f"| {name} | {t['status']} | {t['seconds']} |" for name, t in sorted(timings.items())]
    if timings:
        lines += [f"| **total** | | {sum(t['seconds'] for t in timings.values()):.1f} |"]
    if used := resources.markdown(resources.read(folder)):
        lines += ["", "## Resources", "", "CPU seconds and peak memory of each notebook's process (its "
                  "kernel's included) and of every stage built in this run (`resources.json`).", "", *used]
    for key, text in load_tables(run).items():
        lines += ["", f"## Table `{key}`", "", text.strip()]
    lines += ["", "## Quality metrics", "", "Bit-reproducible by a re-run with the same parameters on "
              "one machine (`ovkit compare`).", "", "| key | value |", "|---|---:|"]
    lines += [f"| `{k}` | {format_value(v)} |" for k, v in sorted(metrics.items()) if not is_timing(k)]
    lines += ["", "## Timings", "", "Wall-clock measurements: they vary between runs and machines.", "",
              "| key | value |", "|---|---:|"]
    lines += [f"| `{k}` | {format_value(v)} |" for k, v in sorted(metrics.items()) if is_timing(k)]
    if parameters is not None:
        dump = yaml.safe_dump(parameters, sort_keys=True).strip()
        lines += ["", "## Parameters", "", "```yaml", dump, "```"]
    path = folder / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path

