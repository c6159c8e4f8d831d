"""One plotting style for every notebook: fixed size and DPI, PNG output, image grids."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .seedstats import per_seed

STYLE = {
    "figure.dpi": 80,
    "savefig.dpi": 80,
    "figure.figsize": (8, 4),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
}


def use_style() -> None:
    """Apply the kit's style; notebooks call it once after imports."""
    matplotlib.rcParams.update(STYLE)
    try:  # inline figures as PNG: nbval byte-compares SVG/PDF
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:
        pass


def image_grid(images, titles=None, rows=None, cols=8, size=1.1, row_labels=None, suptitle=None):
    """Show images (N,H,W,3 uint8) in a grid; returns the figure."""
    images = list(images)
    cols = min(cols, len(images)) if rows is None else cols
    rows = rows or int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.12), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i])
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, ha="right",
                            va="center", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def retrieval_gallery(catalogue, query_view_ids, top_items, title=None):
    """Each row: a query photo, its product's catalogue image, then the retrieved SKUs (✓ = right)."""
    first_view = catalogue.catalog_views().groupby("item_id")["view_id"].first()
    truth = catalogue.views["item_id"].to_numpy()[np.asarray(query_view_ids)]
    images, titles = [], []
    for q, row, t in zip(query_view_ids, top_items, truth, strict=True):
        images += [catalogue.pixels[q], catalogue.pixels[first_view[t]]]
        images += [catalogue.pixels[first_view[i]] for i in row]
        titles += ["query", "its product"]
        titles += ["✓" if i == t else catalogue.items.loc[i, "name"][:10] for i in row]
    return image_grid(images, titles=titles, cols=len(top_items[0]) + 2, suptitle=title)


def code_tree(catalogue, codes, level1=None, n_level1: int = 3, n_level2: int = 3, per_branch: int = 4,
              seed: int = 0):
    """The top of a semantic-ID tree: rows = (level-1 code, level-2 branch), catalogue images of the
    SKUs under each branch. Shows that a level-1 code gathers look-alike products and its level-2
    branches split them further."""
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    first_view = catalogue.catalog_views().groupby("item_id")["view_id"].first()
    if level1 is None:  # the most populated level-1 codes
        level1 = np.bincount(codes[:, 0]).argsort()[::-1][:n_level1]
    images, labels = [], []
    for a in level1:
        branches = np.bincount(codes[codes[:, 0] == a, 1]).argsort()[::-1][:n_level2]
        for b in branches:
            members = np.flatnonzero((codes[:, 0] == a) & (codes[:, 1] == b))
            if not len(members):
                continue
            chosen = rng.choice(members, min(per_branch, len(members)), replace=False)
            row = [catalogue.pixels[first_view[i]] for i in chosen]
            row += [np.full_like(row[0], 255)] * (per_branch - len(row))
            images += row
            labels.append(f"{a}-{b}-… ({len(members)})")
    return image_grid(images, rows=len(labels), cols=per_branch, row_labels=labels, size=1.0,
                      suptitle="semantic-ID tree: level-1 code - level-2 code (SKUs under the branch)")


def side_by_side(catalogue, query_view_ids, systems: dict, targets, k: int = 5):
    """For each query: its photo, then each system's top-``k`` SKUs on its own row (✓ = the target)."""
    first_view = catalogue.catalog_views().groupby("item_id")["view_id"].first()
    blank = np.full_like(catalogue.pixels[0], 255)
    images, titles, labels = [], [], []
    for row, (q, target) in enumerate(zip(query_view_ids, targets, strict=True)):
        for n, (name, ranked) in enumerate(systems.items()):
            images.append(catalogue.pixels[q] if n == 0 else blank)
            titles.append(f"query {row + 1}" if n == 0 else "")
            top = ranked[row][:k]
            images += [catalogue.pixels[first_view[i]] for i in top]
            titles += ["✓ ordered" if i == target else catalogue.items.loc[i, "name"][:12] for i in top]
            labels.append(name)
    return image_grid(images, titles=titles, cols=k + 1, row_labels=labels)


def attention_overlay(photo: np.ndarray, attention: np.ndarray, floor: float = 0.15) -> np.ndarray:
    """A photo (H, W, 3) uint8 darkened where an (h, w) attention map looks away: the map is
    stretched to [0, 1] (near-uniform maps would otherwise leave the photo unchanged), upsampled by
    repetition, and scales brightness from ``floor`` (ignored) to 1 (attended)."""
    a = (attention - attention.min()) / (attention.max() - attention.min() + 1e-9)
    heat = np.kron(a, np.ones((photo.shape[0] // a.shape[0], photo.shape[1] // a.shape[1])))
    return (photo.astype(float) * (floor + (1 - floor) * heat[..., None])).astype(np.uint8)


def slice_bars(table, metric: str = "hr@10", title: str | None = None):
    """Grouped bars of ``metric`` per system, one bar per slice (warm, cold, …), with the 95%
    intervals of :func:`ovkit.metrics.slice_table` as error bars. Returns the figure."""
    value = table[metric].unstack("slice")
    low = value - table[f"{metric} low"].unstack("slice")
    high = table[f"{metric} high"].unstack("slice") - value
    fig, ax = plt.subplots(figsize=(2 + 1.2 * len(value), 3))
    width = 0.8 / value.shape[1]
    for j, name in enumerate(value.columns):
        x = np.arange(len(value)) + (j - (value.shape[1] - 1) / 2) * width
        ax.bar(x, value[name], width, yerr=[low[name], high[name]], capsize=3, label=name)
    ax.set_xticks(np.arange(len(value)), value.index)
    ax.set(ylabel=metric, title=title or f"{metric} by slice (95% CI, users resampled)")
    ax.legend()
    fig.tight_layout()
    return fig


def stage_curves(histories: dict, metric: str = "val_hr@10"):
    """Training curves of consecutive stages (name → history with ``step``, ``loss`` and ``metric``
    on the rows where it was checked), one after the other on a shared step axis. Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3))
    offset = 0
    for name, h in histories.items():
        axes[0].plot(h["step"] + offset, h["loss"].rolling(10, min_periods=1).mean(), label=name)
        checks = h.dropna(subset=[metric])
        axes[1].plot(checks["step"] + offset, checks[metric], marker="o", label=name)
        offset += len(h)
    axes[0].set(title="training loss (rolling mean)", xlabel="step")
    axes[1].set(title=f"{metric.removeprefix('val_')} on validation sessions", xlabel="step")
    axes[0].legend()
    fig.tight_layout()
    return fig


def pruning_pareto(sweep, chosen, max_loss: float):
    """Latency at batch 1 vs HR@10 of every policy in ``sweep`` (:func:`ovkit.prune.sweep`'s table,
    unpruned first), the ``chosen`` row (its index label) in red and the HR@10 floor that
    ``max_loss`` allows. Returns the figure."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(sweep["latency_ms"], sweep["hr@10"], c=["C3" if i == chosen else "C0" for i in sweep.index])
    for label, x, y in zip(sweep["policy"], sweep["latency_ms"], sweep["hr@10"], strict=True):
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    floor = sweep["hr@10"].iloc[0] * (1 - max_loss)
    ax.axhline(floor, ls="--", c="grey", lw=0.8, label=f"−{max_loss:.0%} HR@10")
    ax.set(xlabel="latency per query, batch 1 (ms, p50)", ylabel="HR@10 (ordered SKU)",
           title="validation sessions: latency vs quality over the pruning grid (red: chosen)")
    ax.legend()
    return fig


def ab_lifts(lift, kinds, control: str):
    """Left: the treatment's lifts over ``control`` with 95% CIs beside the paper's (``lift``: rows
    ctr, cvr, orders_per_session; columns lift, ci_low, ci_high, paper). Right: clicks per 100
    sessions by kind, per arm (``kinds``, from ``ABTest.clicks_by_kind``). Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    x = np.arange(len(lift))
    errors = [(lift["lift"] - lift["ci_low"]) * 100, (lift["ci_high"] - lift["lift"]) * 100]
    axes[0].errorbar(x, lift["lift"] * 100, yerr=errors, fmt="o", capsize=4, label="kit (95% CI)")
    axes[0].scatter(x, lift["paper"] * 100, marker="x", c="C3", zorder=3, label="paper")
    axes[0].axhline(0, c="grey", lw=0.8)
    axes[0].set(xticks=x, xticklabels=["item CTR", "CVR", "orders / session"],
                ylabel=f"lift over {control} (%)", title="OneVision vs the reference cascade")
    axes[0].legend()
    kinds.drop(columns="found").plot.barh(stacked=True, ax=axes[1], title="what the shoppers clicked")
    axes[1].set(xlabel="clicks per 100 sessions", ylabel="")
    axes[1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    fig.tight_layout()
    return fig


def seed_strips(summary: dict, keys, cols: int = 4):
    """One panel per metric: each seed's value (a dot, labelled by seed) per group of pooled points
    (a grid cell, or a cell and a source of variation), with the estimate over seeds as a bar and its
    95% interval — random-effects pooled where the runs recorded intervals, else a t-interval.
    ``summary`` is :func:`ovkit.seedstats.load`'s dict."""
    data_of = {k: per_seed(summary, k) for k in keys}
    keys = [k for k in keys if not data_of[k].empty]
    rows = max(1, int(np.ceil(len(keys) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    cells = list(summary["cells"])
    for ax, key in zip(axes.flat, keys, strict=False):
        data = data_of[key]
        for i, cell in enumerate(cells):
            values = data[data["cell"] == cell]
            ax.scatter(np.full(len(values), i), values["value"], s=18, zorder=3)
            for seed, value in zip(values["seed"], values["value"], strict=True):
                ax.annotate(str(seed), (i, value), xytext=(4, 0), textcoords="offset points", fontsize=7)
            stats = summary["cells"][cell].get("metrics", {}).get(key)
            if stats:
                ax.hlines(stats["mean"], i - 0.25, i + 0.25, color="k")
                if stats.get("ci_low") is not None:
                    ax.vlines(i - 0.15, stats["ci_low"], stats["ci_high"], color="k", alpha=0.5)
        low, high = ax.get_ylim()
        if low < 0 < high:  # the null effect, where it is in view
            ax.axhline(0, color="grey", ls=":", lw=0.8)
        ax.set_xticks(range(len(cells)), cells if len(cells) > 1 else [""], rotation=20, fontsize=7)
        ax.set_xlim(-0.6, len(cells) - 0.4)
        ax.set_title(key, fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{summary['sweep']}: each seed (dots), pooled estimate (bar) and 95% interval (line)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def interval_panels(table, columns: dict, labels, xlabel: str = "HR@10 difference"):
    """One panel per estimate: a dot per row of ``table`` with its 95% interval (``<column>_ci_low`` /
    ``_ci_high``; none drawn where either is NaN) and the null effect at 0. ``columns``: column → panel
    title; ``labels``: one y-tick label per row."""
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 0.45 * len(table) + 1.4),
                             sharey=True, squeeze=False)
    y = np.arange(len(table))[::-1]  # the first row on top
    for ax, (column, title) in zip(axes[0], columns.items(), strict=True):
        estimate = table[column].to_numpy(float)
        low, high = (table[f"{column}_ci_{end}"].to_numpy(float) for end in ("low", "high"))
        known = np.isfinite(low) & np.isfinite(high)
        below, above = np.where(known, estimate - low, 0), np.where(known, high - estimate, 0)
        ax.errorbar(estimate, y, xerr=[below, above], fmt="o", capsize=3)
        ax.axvline(0, color="grey", ls=":", lw=0.8)
        ax.set(title=title, xlabel=xlabel)
    axes[0, 0].set_yticks(y, list(labels))
    fig.tight_layout()
    return fig


def scaling_curve(table):
    """The gap to the cascade (with its 95% interval) against the seconds each configuration's
    training took (log scale), a label per point, the one chosen on validation ringed."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    below = (table["gap_vs_mca"] - table["gap_vs_mca_ci_low"]).fillna(0)
    above = (table["gap_vs_mca_ci_high"] - table["gap_vs_mca"]).fillna(0)
    ax.errorbar(table["train_seconds"], table["gap_vs_mca"], yerr=[below, above], fmt="o", capsize=3)
    for row in table.itertuples():
        ax.annotate(f"{row.cell}\n{row.parameters / 1e6:.2f}M params", (row.train_seconds, row.gap_vs_mca),
                    xytext=(5, 4), textcoords="offset points", fontsize=6)
    chosen = table[table["chosen"]]
    ax.scatter(chosen["train_seconds"], chosen["gap_vs_mca"], s=160, facecolors="none", edgecolors="k",
               label="best validation HR@10")
    ax.axhline(0, color="grey", ls=":", lw=0.8)
    ax.set(xscale="log", xlabel="training seconds, three stages (this machine)",
           ylabel="HR@10: OneVision − cascade")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
