"""The plotting style and figure helpers: sizes, what each panel shows, the attention overlay's maths."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ovkit import plots  # noqa: E402


def test_use_style_sets_the_kits_size_and_dpi():
    plots.use_style()
    assert tuple(matplotlib.rcParams["figure.figsize"]) == (8, 4) and matplotlib.rcParams["figure.dpi"] == 80


def test_image_grid_places_every_image_with_its_title_and_hides_the_rest():
    images = np.random.default_rng(0).integers(0, 255, size=(5, 8, 8, 3), dtype=np.uint8)
    fig = plots.image_grid(images, titles=list("abcde"), cols=3, row_labels=["r1", "r2"])
    axes = fig.axes
    assert len(axes) == 6 and [ax.get_title() for ax in axes[:5]] == list("abcde")
    np.testing.assert_array_equal(axes[4].images[0].get_array(), images[4])
    assert not axes[5].images  # the sixth cell is empty
    assert fig.get_size_inches() == pytest.approx((3 * 1.1, 2 * 1.1 * 1.12))
    plt.close(fig)


def test_attention_overlay_keeps_attended_pixels_and_dims_the_rest_to_the_floor():
    photo = np.full((4, 4, 3), 200, np.uint8)
    attention = np.array([[0.0, 1.0], [0.5, 0.0]])
    out = plots.attention_overlay(photo, attention, floor=0.25)
    assert out.shape == photo.shape and out.dtype == np.uint8
    expected = np.kron(200 * (0.25 + 0.75 * attention), np.ones((2, 2)))  # floor + (1 - floor) · map
    np.testing.assert_allclose(out[..., 0], expected, atol=1)  # truncated to uint8
    assert (out[:2, :2] == 50).all()  # ignored: 200 × floor


def test_slice_bars_draws_one_bar_per_system_and_slice_with_its_interval():
    index = pd.MultiIndex.from_product([["mca", "dpo"], ["warm", "cold"]], names=["system", "slice"])
    table = pd.DataFrame({"hr@10": [0.4, 0.2, 0.3, 0.25], "hr@10 low": [0.35, 0.1, 0.25, 0.2],
                          "hr@10 high": [0.45, 0.3, 0.35, 0.3]}, index=index)
    fig = plots.slice_bars(table)
    heights = sorted(round(p.get_height(), 3) for p in fig.axes[0].patches)
    assert heights == [0.2, 0.25, 0.3, 0.4]
    plt.close(fig)


def test_seed_strips_shows_each_seed_and_the_pooled_interval():
    points = {f"seed-{s}": {"cell": "base", "source": "world", "seed": s, "status": "ok",
                            "metrics": {"m": v}} for s, v in enumerate([0.1, 0.2, 0.3])}
    summary = {"sweep": "s", "points": points, "groups": {"base": ["base", "world"]},
               "cells": {"base": {"metrics": {"m": {"mean": 0.2, "ci_low": 0.05, "ci_high": 0.35}}}}}
    fig = plots.seed_strips(summary, ["m", "absent"], cols=2)
    dots = fig.axes[0].collections[0].get_offsets()
    assert sorted(np.asarray(dots)[:, 1].round(3)) == [0.1, 0.2, 0.3]
    assert fig.axes[0].get_title() == "m" and not fig.axes[1].axison  # a metric no seed has is left out
    plt.close(fig)


def test_stage_curves_put_the_stages_one_after_the_other():
    history = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [4.0, 3, 2, 1],
                            "val_hr@10": [None, 0.1, None, 0.2]})
    fig = plots.stage_curves({"pretrain": history, "sft": history})
    loss, checks = fig.axes[0].lines, fig.axes[1].lines
    assert [list(line.get_xdata()) for line in loss] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert [list(line.get_xdata()) for line in checks] == [[2, 4], [6, 8]]  # only the checked steps
    plt.close(fig)


def test_pruning_pareto_marks_the_chosen_policy_and_the_loss_floor():
    sweep = pd.DataFrame({"policy": ["unpruned", "δ 1", "δ 4"], "latency_ms": [10.0, 7.0, 9.0],
                          "hr@10": [0.30, 0.29, 0.30]})
    fig = plots.pruning_pareto(sweep, chosen=2, max_loss=0.01)
    colours = fig.axes[0].collections[0].get_facecolors()
    assert (colours[2] != colours[0]).any() and (colours[1] == colours[0]).all()
    assert fig.axes[0].lines[0].get_ydata()[0] == pytest.approx(0.30 * 0.99)
    plt.close(fig)


def test_ab_lifts_draws_the_kits_intervals_beside_the_papers_values():
    lift = pd.DataFrame({"lift": [0.01, -0.02, 0.0], "ci_low": [0.0, -0.04, -0.01],
                         "ci_high": [0.02, 0.0, 0.01], "paper": [0.0215, 0.0227, 0.0312]},
                        index=["ctr", "cvr", "orders_per_session"])
    kinds = pd.DataFrame({"found": [0.5, 0.6], "exact": [10.0, 12.0], "colourway": [3.0, 2.0]},
                         index=["A", "B"])
    fig = plots.ab_lifts(lift, kinds, "A")
    paper = fig.axes[0].collections[-1].get_offsets()
    assert np.allclose(np.asarray(paper)[:, 1], [2.15, 2.27, 3.12])  # in percent
    assert len(fig.axes[1].patches) == 4  # two kinds × two arms; "found" is not a click kind
    plt.close(fig)


def test_interval_panels_draw_each_row_with_its_interval_first_row_on_top():
    table = pd.DataFrame({"a": [0.1, -0.2], "a_ci_low": [0.0, -0.3], "a_ci_high": [0.2, np.nan]})
    fig = plots.interval_panels(table, {"a": "A"}, ["first", "second"])
    ax = fig.axes[0]
    line, caps, (bars,) = ax.containers[0]
    assert np.asarray(line.get_xydata()).round(3).tolist() == [[0.1, 1.0], [-0.2, 0.0]]
    segments = [np.asarray(s)[:, 0].round(3).tolist() for s in bars.get_segments()]
    assert segments == [[0.0, 0.2], [-0.2, -0.2]]  # an interval with a NaN end is not drawn
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks(), strict=True))
    assert ticks == {"first": 1, "second": 0} and ax.get_title() == "A"
    plt.close(fig)


def test_scaling_curve_rings_the_configuration_chosen_on_validation():
    table = pd.DataFrame({"cell": ["small", "large"], "parameters": [1e5, 1e6],
                          "train_seconds": [10.0, 100.0], "gap_vs_mca": [-0.05, -0.02],
                          "gap_vs_mca_ci_low": [-0.07, -0.04], "gap_vs_mca_ci_high": [-0.03, 0.0],
                          "chosen": [False, True]})
    fig = plots.scaling_curve(table)
    ax = fig.axes[0]
    ring = ax.collections[-1].get_offsets()
    assert np.asarray(ring).tolist() == [[100.0, -0.02]] and ax.get_xscale() == "log"
    assert [t.get_text().splitlines()[0] for t in ax.texts] == ["small", "large"]
    plt.close(fig)
