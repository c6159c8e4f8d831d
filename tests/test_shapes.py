"""The procedurally drawn demo dataset: a valid folder, seeded, with colourways and photos that differ."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ovkit.data import folder, shapes


@pytest.mark.slow
def test_shapes_folder_is_valid_seeded_and_has_colourways(tmp_path):
    a = shapes.write(tmp_path / "a", n_models=6, colourways=2, query_views=4, seed=3)
    b = shapes.write(tmp_path / "b", n_models=6, colourways=2, query_views=4, seed=3)
    items, images = folder.validate(a, open_images=True)
    assert len(items) == 12 and items.groupby("model_id").size().eq(2).all()
    assert (images["kind"] == "catalog").sum() == 12 and (images["kind"] == "query").sum() == 12 * (4 + 2)
    assert set(images.loc[images["kind"] == "query", "split"]) == {"train", "val", "test", "heldout_val",
                                                                    "heldout_test"}
    assert (a / "items.csv").read_text() == (b / "items.csv").read_text()
    first = images["path"].iloc[1]
    assert np.array_equal(np.asarray(Image.open(a / first)), np.asarray(Image.open(b / first)))


def test_catalogue_images_are_clean_and_photos_are_not(tmp_path):
    root = shapes.write(tmp_path / "s", n_models=2, colourways=1, query_views=2)
    images = pd.read_csv(root / "images.csv")
    catalog = np.asarray(Image.open(root / images.loc[images["kind"] == "catalog", "path"].iloc[0]), float)
    photo = np.asarray(Image.open(root / images.loc[images["kind"] == "query", "path"].iloc[0]), float)
    assert (catalog[0, 0] == 255).all() and (catalog[:, :, 0] < 250).mean() > 0.2  # white corner, an object
    assert photo[:8, :8].std() > 3  # a textured background, not white
    with pytest.raises(ValueError, match="at most 24 models"):
        shapes.write(tmp_path / "x", n_models=30)
