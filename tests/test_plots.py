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
