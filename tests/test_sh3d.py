import shutil
import subprocess

import numpy as np
import pytest
from conftest import make_deb

from ovkit.data import sh3d
from ovkit.data.build import select_models


def test_parse_properties_handles_escapes_comments_and_continuations():
    text = "# comment\n! other\nname#1=Bill 10\\u20ac\nlong#1=a \\\n  b\nkey : value\n\nempty#1=\n"
    props = sh3d.parse_properties(text)
    assert props == {"name#1": "Bill 10€", "long#1": "a b", "key": "value", "empty#1": ""}


def test_read_catalogue_fields(tiny_sh3f):
    models = sh3d.read_catalogue(tiny_sh3f)
    assert [m.name for m in models][:2] == ["Red chair", "Coffee table"]
    chair = models[0]
    assert chair.model_key == "Tiny:Tiny#box-chair"
    assert (chair.width, chair.depth, chair.height) == (45, 50, 90)
    assert chair.tags == ["Test", "Box"] and chair.category == "Living room"
    assert chair.model_path == "tiny/box-chair/box-chair.obj"


def test_select_models_drops_non_products_and_balances_categories(tiny_sh3f):
    order = select_models(sh3d.read_catalogue(tiny_sh3f), seed=0)
    assert "Front door" not in [m.name for m in order]
    assert len(order) == 5
    first_three = {m.category for m in order[:3]}
    assert len(first_three) == 3  # one per category before any category repeats


def test_load_mesh_is_z_up_real_size_and_cached(kit_home, tiny_sh3f):
    chair = sh3d.read_catalogue(tiny_sh3f)[0]
    mesh = sh3d.load_mesh(chair)
    extent = mesh["vertices"].max(0) - mesh["vertices"].min(0)
    # width along x, depth along y, height along z (Sweet Home 3D is y-up, pybullet z-up)
    np.testing.assert_allclose(extent, [45, 50, 90], rtol=1e-5)
    np.testing.assert_allclose(mesh["vertices"].mean(0), 0, atol=1e-4)
    assert len(mesh["colours"]) == 2 and mesh["part"].max() == 1
    colours = sorted(tuple(np.round(c[:3], 2)) for c in mesh["colours"])
    assert colours == [(0.1, 0.1, 0.8), (0.8, 0.1, 0.1)]  # the MTL's two Kd colours
    cache = sh3d._mesh_cache_path(chair)
    assert cache.exists()
    again = sh3d.load_mesh(chair)
    assert all(np.array_equal(mesh[k], again[k]) for k in mesh)


def test_broken_mesh_raises_data_error(kit_home, tiny_sh3f):
    broken = [m for m in sh3d.read_catalogue(tiny_sh3f) if m.name == "Broken stool"][0]
    with pytest.raises(sh3d.DataError, match="mesh"):
        sh3d.load_mesh(broken)


def test_corrupt_sh3f_is_a_clear_error(tmp_path, tiny_sh3f):
    bad = tmp_path / "Bad.sh3f"
    bad.write_bytes(tiny_sh3f.read_bytes()[:200])
    with pytest.raises(sh3d.DataError, match="corrupt or truncated"):
        sh3d.read_catalogue(bad)


def test_deb_extraction_matches_dpkg(tmp_path, tiny_deb, tiny_sh3f):
    files = sh3d.extract_sh3f_from_deb(tiny_deb, tmp_path / "out")
    assert [f.name for f in files] == ["Tiny.sh3f"]
    assert files[0].read_bytes() == tiny_sh3f.read_bytes()
    if shutil.which("dpkg-deb"):  # independent oracle: Debian's own tool reads our archive
        listing = subprocess.run(["dpkg-deb", "-c", str(tiny_deb)], capture_output=True, text=True)
        assert listing.returncode == 0 and "Tiny.sh3f" in listing.stdout


def test_truncated_deb_is_a_clear_error(tmp_path, tiny_deb):
    bad = tmp_path / "sweethome3d-furniture_0-1_all.deb"
    bad.write_bytes(tiny_deb.read_bytes()[: len(tiny_deb.read_bytes()) // 2])
    with pytest.raises(sh3d.DataError, match="truncated|corrupt"):
        sh3d.extract_sh3f_from_deb(bad, tmp_path / "out")
    not_deb = tmp_path / "x.deb"
    not_deb.write_bytes(b"hello")
    with pytest.raises(sh3d.DataError, match="not a Debian package"):
        sh3d.extract_sh3f_from_deb(not_deb, tmp_path / "out2")


def test_resolve_sources(kit_home, tmp_path, tiny_deb, tiny_sh3f, monkeypatch):
    assert sh3d.resolve_sh3f(tiny_sh3f) == [tiny_sh3f]
    assert [f.name for f in sh3d.resolve_sh3f(tiny_deb)] == ["Tiny.sh3f"]
    assert sh3d.resolve_sh3f(tiny_sh3f.parent) == [tiny_sh3f]
    with pytest.raises(sh3d.DataError, match="does not exist"):
        sh3d.resolve_sh3f(tmp_path / "nope.deb")
    monkeypatch.setenv("OVKIT_SH3D", str(tiny_deb))
    assert [f.name for f in sh3d.resolve_sh3f("")] == ["Tiny.sh3f"]


def test_no_apt_and_no_deb_explains_the_fix(kit_home, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(sh3d.DataError, match="OVKIT_SH3D"):
        sh3d.resolve_sh3f("")


def test_concurrent_extraction_keeps_the_first_finished_copy(kit_home, tiny_sh3f, monkeypatch):
    """Two render workers may unzip one library at once: the loser's rename must not fail or delete."""
    real_rename = sh3d.os.rename

    def rival_finishes_first(src, dst):
        rival = sh3d.Path(str(src) + "-rival")
        shutil.copytree(src, rival)
        real_rename(rival, dst)  # the other worker's complete copy lands first
        real_rename(src, dst)  # ours then finds the folder taken (OSError)

    monkeypatch.setattr(sh3d.os, "rename", rival_finishes_first)
    dest = sh3d._unzipped(tiny_sh3f)
    assert (dest / ".complete").exists()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary folder left behind


def test_a_changed_deb_of_the_same_name_is_unpacked_anew(kit_home, tiny_deb, tiny_sh3f):
    """The unpacked files are keyed by the package's size and hash, not its file name."""
    first = sh3d.resolve_sh3f(tiny_deb)
    assert first[0].read_bytes() == tiny_sh3f.read_bytes()
    assert sh3d.resolve_sh3f(tiny_deb) == first  # the same package: its unpacked folder is reused
    make_deb(tiny_deb, {"Other.sh3f": b"another catalogue"})  # a new release under the old name
    again = sh3d.resolve_sh3f(tiny_deb)
    assert [f.name for f in again] == ["Other.sh3f"] and again[0].read_bytes() == b"another catalogue"


def _zero_middle(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes(64) + blob[middle + 64:]


@pytest.mark.parametrize("damage", [
    lambda deb: deb.write_bytes(deb.read_bytes()[: deb.stat().st_size // 2]),  # truncated download
    lambda deb: deb.write_bytes(_zero_middle(deb.read_bytes())),  # same size, other bytes
])
def test_a_broken_deb_after_a_good_one_is_a_clear_error(kit_home, tiny_deb, damage):
    sh3d.resolve_sh3f(tiny_deb)
    damage(tiny_deb)
    with pytest.raises(sh3d.DataError, match="truncated|corrupt"):
        sh3d.resolve_sh3f(tiny_deb)
    unpacked = sh3d.raw_dir() / "sh3f"
    assert not [p.name for p in unpacked.iterdir() if ".tmp" in p.name]  # no half-unpacked folder left


def test_a_deb_without_catalogues_leaves_nothing_behind(kit_home, tmp_path):
    empty = make_deb(tmp_path / "sweethome3d-furniture_1-1_all.deb", {"README": b"no furniture"})
    with pytest.raises(sh3d.DataError, match="contains no .sh3f catalogues"):
        sh3d.resolve_sh3f(empty)
    assert list((sh3d.raw_dir() / "sh3f").iterdir()) == []


def test_damage_anywhere_in_a_deb_is_a_clear_error(tmp_path, tiny_deb):
    """Damaged compressed data or member headers raise DataError, never a decoder's own exception."""
    blob = tiny_deb.read_bytes()
    bad = tmp_path / "bad.deb"
    for pos in range(8, len(blob) - 8, max(1, len(blob) // 60)):
        bad.write_bytes(blob[:pos] + b"\xff" * 8 + blob[pos + 8:])
        try:
            sh3d.extract_sh3f_from_deb(bad, tmp_path / "out")
        except sh3d.DataError as err:
            assert "delete it" in str(err) or "no data.tar" in str(err)
