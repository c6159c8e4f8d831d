import numpy as np
import pytest

from ovkit.data import skus


@pytest.mark.parametrize("name,kind", [
    ("Bedside table", "table"), ("Desk lamp", "lamp"), ("Coffee table", "table"),
    ("Coffee cup", "tableware"), ("Chair with cushion", "chair"), ("Bunk bed", "bed"),
    ("Plate, glass and cutlery", "tableware"), ("Washing machine", "appliance"),
    ("Convertible sofa BZ", "sofa"), ("Tulips", "plant"), ("Deer", "other"),
])
def test_fine_type_reads_the_head_noun(name, kind):
    assert skus.fine_type(name) == kind


def test_fine_type_falls_back_to_tags():
    assert skus.fine_type("Winchester", ["Blend Swap", "Armchair"]) == "chair"


def test_colour_name_of_palette_colours_is_themselves():
    for name, rgb in skus.PALETTE.items():
        assert skus.colour_name(rgb) == name


def _mesh():
    # two triangles of part 0 (large) and one of part 1 (small)
    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [10, 10, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]],
                 np.float32)
    f = np.array([[0, 1, 2], [1, 3, 2], [4, 5, 6]])
    return {"vertices": v, "faces": f, "part": np.array([0, 0, 1]),
            "colours": np.array([[0.8, 0.1, 0.1, 1], [0.1, 0.1, 0.8, 1]], np.float32)}


def test_colourways_recolour_the_dominant_part_with_distinct_names():
    mesh = _mesh()
    assert skus.dominant_group(mesh).tolist() == [True, False]
    ways = skus.colourways(mesh, 4, np.random.default_rng(0))
    names = [n for n, _ in ways]
    assert names[0] == "red" and len(set(names)) == 4
    np.testing.assert_array_equal(ways[0][1], mesh["colours"])
    for name, colours in ways[1:]:
        assert skus.colour_name(colours[0]) == name  # the dominant part now has the new colour
        np.testing.assert_array_equal(colours[1], mesh["colours"][1])  # the rest is untouched


def test_synthetic_price_is_positive_and_seeded():
    a = skus.synthetic_price("chair", (50, 50, 90), 1.0, np.random.default_rng(3))
    b = skus.synthetic_price("chair", (50, 50, 90), 1.0, np.random.default_rng(3))
    assert a == b and a > 0
