"""The query explorer: one card per test query, a static gallery or a widget picker."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import fake_catalogue  # noqa: E402

from ovkit import explore, plots  # noqa: E402


@pytest.fixture
def explorer():
    cat, _ = fake_catalogue(n_models=10, colourways=2, query_views=3)
    cat.pixels = np.zeros((len(cat.views), 8, 8, 3), np.uint8)
    queries = cat.views[cat.views["kind"] == "query"].head(4)
    sessions = pd.DataFrame({"session": [10, 11, 12, 13], "user": [0, 0, 1, 2],
                             "view_id": queries["view_id"].to_numpy(), "ordered": [0, 3, 5, 7],
                             "intent": [1, 3, 4, 7]})
    ranked = np.tile(np.arange(10), (4, 1))
    codes = np.arange(60).reshape(20, 3) % 7
    return explore.Explorer(cat, sessions, {10: [1, 2], 11: [4]}, {"A": ranked, "B": ranked[:, ::-1]}, codes)


def test_card_shows_photo_history_and_each_systems_list_with_sids(explorer):
    fig = explorer.card(0)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 3 * 11  # photo/history row + one row per system, 10 SKUs + a label each
    assert titles[0].startswith("query") and titles[1].startswith("in the photo")
    assert titles[2].startswith("ordered") and titles[3].startswith("history") and titles[5] == ""
    first_view = explorer.catalogue.catalog_views().groupby("item_id")["view_id"].first()
    explorer.catalogue.pixels[first_view[1]] = 7  # the photographed SKU's catalogue image is shown
    assert (np.asarray(explorer.card(0).axes[1].images[0].get_array()) == 7).all()
    assert titles[12].startswith("✓ 0-1-2")  # system A ranks the ordered SKU 0 first; SID 0-1-2
    assert titles[13].startswith("≈ ")  # SKU 1 is SKU 0 in another colourway
    assert "SID 0-1-2" in fig._suptitle.get_text()
    bare = [ax.get_title() for ax in explorer.card(0, history=0).axes[:11]]
    assert not any(t.startswith("history") for t in bare)  # none asked: none shown (not all of them)
    plt.close("all")
    with pytest.raises(IndexError, match="pick 0"):
        explorer.card(4)


def test_static_gallery_and_widget(explorer):
    assert not explore.interactive()  # pytest is no notebook: the gallery is what runs here
    plt.close("all")
    assert explorer.show(examples=2, mode="auto") is None and len(plt.get_fignums()) == 2
    plt.close("all")
    explorer.show(index=3, mode="static")
    assert len(plt.get_fignums()) == 1
    plt.close("all")
    widget = explorer.show(index=1, mode="widget")
    slider = widget.children[0].children[0]
    assert slider.value == 1 and slider.max == 3
    with pytest.raises(ValueError, match="'auto', 'widget' or 'static'"):
        explorer.show(mode="gui")


def test_explorer_checks_its_input(explorer):
    with pytest.raises(ValueError, match="ranked 3 queries"):
        explore.Explorer(explorer.catalogue, explorer.sessions, {}, {"A": np.zeros((3, 10), int)},
                         explorer.codes)


def test_attention_overlay_keeps_attended_pixels_and_darkens_the_rest():
    photo = np.full((8, 8, 3), 200, np.uint8)
    attention = np.array([[0.3, 0.2], [0.25, 0.25]])  # the top-left quarter is attended most
    out = plots.attention_overlay(photo, attention)
    assert out.shape == photo.shape and out.dtype == np.uint8
    # stretched to [0, 1]: top-left 1 (unchanged), bottom 0.5 (0.15 + 0.85 / 2), top-right the floor 0.15
    for part, value in ((out[:4, :4], 200), (out[4:], 115), (out[:4, 4:], 30)):
        assert np.abs(part.astype(int) - value).max() <= 1  # truncated to uint8
