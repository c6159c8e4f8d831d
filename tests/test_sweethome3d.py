"""Checks on the real Sweet Home 3D package (fetched by `make data`); skipped when it is absent."""

import pytest

from ovkit import data
from ovkit.data import sh3d
from ovkit.data.build import select_models

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def sh3f_files():
    deb = sh3d.find_deb()
    if deb is None:
        pytest.skip("Sweet Home 3D package not fetched: run 'make data'")
    return sh3d.resolve_sh3f(deb, fetch=False)


def test_library_has_746_products_in_9_categories(sh3f_files):
    models = [m for f in sh3f_files for m in sh3d.read_catalogue(f)]
    assert len(models) == 820
    products = select_models(models, seed=0)
    assert len(products) == 746
    assert len({m.category for m in products}) == 9
    assert all(m.width > 0 and m.height > 0 and m.model_path.endswith(".obj") for m in products)


@pytest.mark.slow
def test_a_few_real_models_render(kit_home, sh3f_files):
    cat = data.catalogue(n_models=4, colourways=2, query_views=3, source=sh3f_files[0].parent, workers=1)
    s = cat.summary()
    assert (s["n_models"], s["n_skus"], s["n_query_views"]) == (4, 8, 8 * (3 + 2 * (2 + 5)))  # + held-out
    assert (cat.views["source"] == "icon").sum() >= 3  # real shop icons for colourway 0
    assert cat.pixels.shape[1:] == (128, 128, 3)
