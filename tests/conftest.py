"""Shared fixtures: an isolated kit home and a tiny, hand-made Sweet Home 3D library."""

from __future__ import annotations

import io
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ovkit import store
from ovkit.data import sh3d

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def kit_home(tmp_path, monkeypatch):
    """Point data, artifacts and runs at a temporary folder."""
    for env, sub in (("OVKIT_DATA", "data"), ("OVKIT_ARTIFACTS", "artifacts"), ("OVKIT_RUNS", "runs")):
        monkeypatch.setenv(env, str(tmp_path / sub))
    monkeypatch.delenv("OVKIT_SH3D", raising=False)
    monkeypatch.setenv("OVKIT_PROFILE", "pytest")
    monkeypatch.delenv("OVKIT_RUN", raising=False)
    return tmp_path


def write_notebook(path, params_src: str, body_src: str) -> None:
    """A two-cell notebook: a ``parameters`` cell and a body (for the runner and sweep tests)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body_src)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def box_obj(name: str, size=(1.0, 2.0, 3.0), split_materials=True) -> tuple[str, str]:
    """OBJ and MTL text for an axis-aligned box; top/bottom faces get a second material."""
    sx, sy, sz = size
    v = [(x * sx, y * sy, z * sz) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    quads = {"side": [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7)],
             "cap": [(1, 3, 7, 5), (2, 6, 8, 4)]}
    lines = [f"mtllib {name}.mtl"] + [f"v {x} {y} {z}" for x, y, z in v]
    for material, faces in quads.items():
        lines.append(f"usemtl {material if split_materials else 'side'}")
        lines += [f"f {a} {b} {c}\nf {a} {c} {d}" for a, b, c, d in faces]
    mtl = "newmtl side\nKd 0.8 0.1 0.1\nnewmtl cap\nKd 0.1 0.1 0.8\n"
    return "\n".join(lines) + "\n", mtl


def _icon_png() -> bytes:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 10:22] = (200, 30, 30, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


MODELS = [
    # (id, name, category, size w/d/h cm)
    ("box-chair", "Red chair", "Living room", (45, 50, 90)),
    ("box-table", "Coffee table", "Living room", (120, 60, 45)),
    ("box-lamp", "Desk lamp", "Lights", (20, 20, 40)),
    ("box-bed", "Bunk bed", "Bedroom", (100, 200, 160)),
    ("door", "Front door", "Doors and windows", (90, 10, 210)),
    ("broken", "Broken stool", "Kitchen", (40, 40, 60)),
]


@pytest.fixture
def tiny_sh3f(tmp_path) -> Path:
    """A .sh3f with four box 'products', a door (not a product) and one model whose mesh is garbage."""
    path = tmp_path / "Tiny.sh3f"
    props = ["# tiny test library", "license=Public domain", ""]
    with zipfile.ZipFile(path, "w") as zf:
        for i, (mid, name, category, (w, d, h)) in enumerate(MODELS, start=1):
            obj, mtl = box_obj(mid, size=(1 + i * 0.1, 1.0, 2.0))
            if mid == "broken":
                obj = "this is not an obj file\nf 1 2 3\n"
            zf.writestr(f"tiny/{mid}/{mid}.obj", obj)
            zf.writestr(f"tiny/{mid}/{mid}.mtl", mtl)
            zf.writestr(f"tiny/{mid}.png", _icon_png())
            props += [f"id#{i}=Tiny#{mid}", f"name#{i}={name}", f"category#{i}={category}",
                      f"tags#{i}=Test, Box", f"creator#{i}=Creator{i % 2}",
                      f"icon#{i}=/tiny/{mid}.png", f"model#{i}=/tiny/{mid}/{mid}.obj",
                      f"width#{i}={w}", f"depth#{i}={d}", f"height#{i}={h}", ""]
        zf.writestr(sh3d.PROPERTIES, "\n".join(props))
    return path


def make_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian package (ar archive with a data.tar.xz) holding ``files``."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:xz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"./usr/share/sweethome3d/furniture/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", tar_buf.getvalue())]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode()
        out += header + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


# A three-model catalogue of the tiny library, small enough to build in seconds.
SMALL = dict(n_models=3, colourways=2, query_views=4, cold_fraction=0.34, seed=1,
             render={"render_size": 64, "image_size": 32})


@pytest.fixture
def built(kit_home, tiny_sh3f):
    """The SMALL catalogue of the tiny library (one worker)."""
    from ovkit import data

    return data.catalogue(source=tiny_sh3f, workers=1, **SMALL)


@pytest.fixture
def tiny_deb(tmp_path, tiny_sh3f) -> Path:
    return make_deb(tmp_path / "sweethome3d-furniture_9.9-1_all.deb", {"Tiny.sh3f": tiny_sh3f.read_bytes()})


FINE_TYPES = ["chair", "table", "lamp", "sofa"]


def fake_catalogue(n_models=40, colourways=3, query_views=6, cold_every=10, dim=32, seed=0):
    """A catalogue-shaped object and view embeddings: SKUs of one model share a shape direction,
    colourways add a smaller colour direction, views add noise (queries more than catalogue views)."""
    rng = np.random.default_rng(seed)
    items, views, emb = [], [], []
    shape_dirs = rng.normal(size=(n_models, dim))
    type_dirs = rng.normal(size=(len(FINE_TYPES), dim)) * 2
    for m in range(n_models):
        for c in range(colourways):
            i = len(items)
            items.append({"item_id": i, "sku": f"m{m}/{c}", "model_id": m, "category": f"room{m % 3}",
                          "fine_type": FINE_TYPES[m % len(FINE_TYPES)], "name": f"model {m}",
                          "colour": f"c{c}", "creator": f"maker{m % 5}", "price": float(20 + 7 * (m % 11)),
                          "cold": i % cold_every == cold_every - 1})
            centre = type_dirs[m % len(FINE_TYPES)] + shape_dirs[m] + 0.5 * rng.normal(size=dim)
            for kind, n, noise in (("catalog", 1, 0.1), ("query", query_views, 0.6)):
                for v in range(n):
                    split = "catalog" if kind == "catalog" else (  # cold SKUs: val and test, like build
                        ("test" if v % 2 == 0 else "val") if items[-1]["cold"] else
                        "test" if v % 3 == 0 else "val" if v % 3 == 1 else "train")
                    views.append({"view_id": len(views), "item_id": i, "kind": kind, "split": split})
                    emb.append(centre + noise * rng.normal(size=dim))
    emb = np.asarray(emb, np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    artifact = store.Artifact("catalogue", f"fake{seed:012d}", None, {})
    items, views = pd.DataFrame(items), pd.DataFrame(views)
    cat = types.SimpleNamespace(items=items, views=views, artifact=artifact, key=artifact.key,
                                catalog_views=lambda: views[views["kind"] == "catalog"])
    return cat, emb


def fake_world():
    """A fake catalogue, its embeddings and simulated logs served by a visual-recall cascade."""
    from ovkit import mca, sim

    cat, emb = fake_catalogue(n_models=30, colourways=3, query_views=9)
    cfg = sim.SimConfig(n_users=30, train_sessions=8, test_sessions=2, explore_pool=30)
    cascade = mca.Cascade(cat, emb, mca.MCAConfig(recall=40, prerank=20))
    return cat, emb, sim.simulate(cat, emb, cfg, retrieve=cascade.retrieve)


@pytest.fixture(scope="module")
def fake_views():
    """The default fake catalogue and its view embeddings (test_vrq, test_sids)."""
    return fake_catalogue()
