"""The query explorer (notebook 06): one test query, its shopper's history, and each system's top-10
with semantic IDs, side by side.

In JupyterLab it is an ``ipywidgets`` picker (a slider over the test queries and a *random* button);
under papermill, nbval or ``ovkit run`` — anywhere a widget cannot be drawn — a static gallery of a
few queries, so the notebook's stored outputs show real results.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .paths import current_profile
from .plots import image_grid


@dataclass
class Explorer:
    """What the explorer shows for test session ``i``: photo, history, target and each system's list."""

    catalogue: object  # data.Catalogue
    sessions: pd.DataFrame  # test sessions: view_id, user, ordered (the target) …
    histories: dict  # session → the shopper's earlier clicks
    systems: dict  # name → (S, k) SKU ids, one row per session
    codes: np.ndarray  # (n_items, levels) semantic IDs

    def __post_init__(self):
        for name, ranked in self.systems.items():
            if len(ranked) != len(self.sessions):
                raise ValueError(f"system {name!r} ranked {len(ranked)} queries, but there are "
                                 f"{len(self.sessions)} sessions")
        self._first_view = self.catalogue.catalog_views().groupby("item_id")["view_id"].first()

    def __len__(self):
        return len(self.sessions)

    def sid(self, item: int) -> str:
        return "-".join(str(c) for c in self.codes[item])

    def card(self, i: int, k: int = 10, history: int = 8):
        """The figure for test query ``i``: row 1 the photo, the product in it (its catalogue image),
        the SKU the shopper orders and up to ``history`` earlier clicks; then one row per system
        (✓ = the SKU this shopper orders; ≈ = another colourway of it)."""
        if not 0 <= i < len(self):
            raise IndexError(f"test query {i} does not exist: pick 0 … {len(self) - 1}")
        session = self.sessions.iloc[i]
        items, pixels = self.catalogue.items, self.catalogue.pixels
        blank = np.full_like(pixels[0], 255)
        model = items["model_id"].to_numpy()
        target = int(session["ordered"])
        shown = [int(session["intent"])] if "intent" in session else []  # the product photographed
        clicks = list(self.histories.get(session["session"], []))
        past = clicks[max(0, len(clicks) - max(0, min(history, k - len(shown) - 1))):]  # row 1: k + 1 images

        def label(what, item):
            return f"{what}\n{items.loc[item, 'name'][:12]}"

        images = [pixels[session["view_id"]]] + [pixels[self._first_view[h]] for h in [*shown, target, *past]]
        titles = [f"query (user {session['user']})", *[label("in the photo", h) for h in shown],
                  label("ordered", target), *[label("history", h) for h in past]]
        images += [blank] * (k + 1 - len(images))
        titles += [""] * (k + 1 - len(titles))
        labels = ["photo · order · history"]
        for name, ranked in self.systems.items():
            images.append(blank)
            titles.append(name)
            for item in ranked[i][:k]:
                images.append(pixels[self._first_view[item]])
                mark = "✓ " if item == target else "≈ " if model[item] == model[target] else ""
                titles.append(f"{mark}{self.sid(item)}\n{items.loc[item, 'name'][:12]}")
            labels.append(name)
        fig = image_grid(images[: (k + 1) * len(labels)], titles=titles, cols=k + 1, rows=len(labels),
                         size=1.15, suptitle=f"test query {i}: the shopper orders "
                         f"{items.loc[target, 'name']} (SID {self.sid(target)})")
        return fig

    def show(self, index: int | None = None, examples: int = 3, mode: str = "auto", seed: int = 0):
        """A widget picker (``mode="widget"``, or ``"auto"`` in an interactive session), else a static
        gallery: query ``index``, or ``examples`` random queries."""
        if mode not in ("auto", "widget", "static"):
            raise ValueError(f"explorer mode must be 'auto', 'widget' or 'static', got {mode!r}")
        rng = np.random.default_rng(seed)
        if mode == "widget" or (mode == "auto" and interactive()):
            return self._widget(index if index is not None else int(rng.integers(len(self))), rng)
        if index is None:
            chosen = rng.choice(len(self), min(examples, len(self)), replace=False)
        else:
            chosen = [index]
        for i in chosen:
            self.card(int(i))
            plt.show()
        return None

    def _widget(self, start: int, rng):
        import ipywidgets as widgets

        slider = widgets.IntSlider(value=start, min=0, max=len(self) - 1, description="test query",
                                   continuous_update=False)
        button = widgets.Button(description="random", icon="random")
        out = widgets.Output()

        def draw(_=None):
            with out:
                out.clear_output(wait=True)
                self.card(slider.value)
                plt.show()

        slider.observe(draw, names="value")
        button.on_click(lambda _: setattr(slider, "value", int(rng.integers(len(self)))))
        draw()
        return widgets.VBox([widgets.HBox([slider, button]), out])


def interactive() -> bool:
    """True in a notebook a person drives (JupyterLab): an IPython kernel, ipywidgets installed, and
    not run by ``ovkit run`` / nbval / ``make notebooks`` (those set ``OVKIT_PROFILE``)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell" \
        and current_profile() == "interactive"
