"""Sweet Home 3D furniture: fetch the Debian package, unpack its ``.sh3f`` catalogues, parse them.

The Debian package ``sweethome3d-furniture`` carries five ``.sh3f`` files (zip archives). Each has a
``PluginFurnitureCatalog.properties`` (a Java properties file: ``name#12=Chair``, ``model#12=...``)
and, per model, an OBJ mesh with its materials and a small catalogue icon.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import data_dir

PACKAGE = "sweethome3d-furniture"
PROPERTIES = "PluginFurnitureCatalog.properties"
NON_PRODUCTS = ("Characters", "Doors and windows", "Staircases")
ENV_SOURCE = "OVKIT_SH3D"


class DataError(RuntimeError):
    """A data problem the user can fix; the message says how."""


# --------------------------------------------------------------------------- fetching


def raw_dir() -> Path:
    return data_dir() / "raw"


def find_deb(folder: Path | None = None) -> Path | None:
    """The newest already-downloaded ``sweethome3d-furniture_*.deb`` in ``folder``."""
    folder = folder or raw_dir()
    debs = sorted(folder.glob(f"{PACKAGE}_*.deb"))
    return debs[-1] if debs else None


def fetch_deb(dest: Path | None = None) -> Path:
    """Download the package with ``apt-get download`` (no root needed) into ``dest``."""
    dest = dest or raw_dir()
    dest.mkdir(parents=True, exist_ok=True)
    if (found := find_deb(dest)) is not None:
        return found
    if shutil.which("apt-get") is None:
        raise DataError(
            f"No Sweet Home 3D data: apt-get is not available to download '{PACKAGE}'.\n"
            f"Download {PACKAGE}_*.deb (e.g. from packages.debian.org) by hand and either put it in "
            f"{dest}/ or point {ENV_SOURCE}=/path/to/{PACKAGE}.deb (a folder of .sh3f files works too)."
        )

    def download():
        return subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=dest, capture_output=True, text=True
        )

    result = download()
    if result.returncode != 0 and os.geteuid() == 0:  # fresh machine: package lists not fetched yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        result = download()
    if result.returncode != 0 or find_deb(dest) is None:
        raise DataError(
            f"'apt-get download {PACKAGE}' failed:\n{result.stderr.strip()}\n"
            "Run 'sudo apt-get update' and try again, or download the .deb by hand and set "
            f"{ENV_SOURCE}=/path/to/{PACKAGE}_*.deb."
        )
    return find_deb(dest)


def _ar_members(deb: Path):
    """Yield (name, bytes) for each member of a Debian ``ar`` archive."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise DataError(f"{deb} is not a Debian package (no ar header): delete it and fetch again.")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        try:
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            if size < 0:  # would step backwards through the archive forever
                raise ValueError(f"member size {size}")
        except ValueError as err:  # UnicodeDecodeError included: damaged bytes where a header belongs
            raise DataError(f"{deb} is corrupt (bad member header: {err}): delete it and run 'make data' "
                            "again.") from err
        body = data[pos + 60 : pos + 60 + size]
        if len(body) < size:
            raise DataError(f"{deb} is truncated: delete it and run 'make data' again.")
        yield name, body
        pos += 60 + size + (size % 2)


def extract_sh3f_from_deb(deb: Path, dest: Path) -> list[Path]:
    """Unpack the ``.sh3f`` files of the package into ``dest`` (pure Python, no dpkg needed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, body in _ar_members(deb):
        if not name.startswith("data.tar"):
            continue
        try:
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                members = [m for m in tar.getmembers() if m.name.endswith(".sh3f") and m.isfile()]
                for member in members:
                    target = dest / Path(member.name).name
                    tmp = target.with_suffix(".part")
                    with tar.extractfile(member) as src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    os.replace(tmp, target)
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as err:  # damaged data.tar.*
            raise DataError(
                f"{deb} is corrupt or truncated ({err}): delete it and run 'make data' again."
            ) from err
        return sorted(dest.glob("*.sh3f"))
    raise DataError(f"{deb} has no data.tar member: is it really {PACKAGE}?")


def resolve_sh3f(source: str | os.PathLike | None = None, fetch: bool = True) -> list[Path]:
    """The ``.sh3f`` files to build from.

    Args:
        source: a ``.deb``, a ``.sh3f`` file or a folder holding ``.sh3f`` files; when empty the
            ``OVKIT_SH3D`` environment variable, then ``data/raw``, then ``apt-get download``.
        fetch: allow downloading the package when nothing is found locally.
    """
    source = source or os.environ.get(ENV_SOURCE) or ""
    unpacked = raw_dir() / "sh3f"
    if source:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"Sweet Home 3D source {path} does not exist (check DATA_SOURCE / {ENV_SOURCE}).")
        if path.is_dir():
            files = sorted(path.glob("*.sh3f")) or sorted(path.glob("**/*.sh3f"))
            if not files:
                raise DataError(f"{path} holds no .sh3f files, and no items.csv / images.csv of a dataset "
                                "folder (see the README's 'Bring your own data').")
            return files
        if path.suffix == ".sh3f":
            return [path]
        if path.suffix == ".deb":
            return _unpacked_deb(path, unpacked)
        raise DataError(f"Don't know how to read {path}: give a .deb, a .sh3f or a folder of .sh3f files.")
    deb = find_deb() if not fetch else fetch_deb()
    if deb is None:
        raise DataError("No Sweet Home 3D data in data/raw: run 'make data' (or 'ovkit fetch').")
    return _unpacked_deb(deb, unpacked)


_DEB_KEYS: dict = {}  # file identity and times -> content key: a 120 MB package is hashed once per process


def _deb_key(deb: Path) -> str:
    """The package's size and BLAKE2 hash: a different or broken package under the same file name gets
    its own unpacked folder instead of the stale files of the one unpacked before."""
    stat = deb.stat()
    seen = (str(deb.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if seen not in _DEB_KEYS:
        h = hashlib.blake2b(digest_size=8)
        with open(deb, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _DEB_KEYS[seen] = f"{stat.st_size}-{h.hexdigest()}"
    return _DEB_KEYS[seen]


def _unpacked_deb(deb: Path, parent: Path) -> list[Path]:
    """The package's ``.sh3f`` files, unpacked once per package content into ``parent``."""
    def unpack(tmp: Path) -> None:
        if not extract_sh3f_from_deb(deb, tmp):
            raise DataError(f"{deb} contains no .sh3f catalogues.")

    return sorted(_extract_once(parent / f"{deb.stem}-{_deb_key(deb)}", unpack).glob("*.sh3f"))


def _extract_once(dest: Path, extract) -> Path:
    """``dest`` filled by ``extract(folder)``: done in a temporary folder that is renamed when complete,
    so an interrupted or failed extraction is never read and a finished one is never redone."""
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        extract(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").write_text("ok")
    if dest.exists() and not (dest / ".complete").exists():
        shutil.rmtree(dest, ignore_errors=True)  # a leftover without its marker
    try:
        os.rename(tmp, dest)
    except OSError:  # another process (a render worker) finished the same extraction first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / ".complete").exists():
            raise
    return dest


def fingerprint(files: list[Path]) -> str:
    """A cheap identity of the source files (names and sizes) for the stage key."""
    blob = ";".join(f"{f.name}:{f.stat().st_size}" for f in files)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- catalogue files


@dataclass
class FurnitureModel:
    """One 3D model of a ``.sh3f`` catalogue (one row of its properties file)."""

    model_key: str  # unique: "<catalogue file>:<id>"
    name: str
    category: str
    tags: list[str]
    creator: str
    width: float  # cm, along x
    depth: float  # cm, along z (Sweet Home 3D is y-up)
    height: float  # cm, along y
    model_path: str  # path inside the zip
    icon_path: str
    rotation: tuple[float, ...] | None  # row-major 3x3, Sweet Home 3D's "modelRotation"
    sh3f: Path


def parse_properties(text: str) -> dict[str, str]:
    """Parse a Java ``.properties`` text (``key=value``, ``#`` comments, ``\\uXXXX`` escapes)."""
    result = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):  # continuation lines
            line = line[:-1] + lines[i].strip()
            i += 1
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:]+?)\s*[=:]\s*(.*)", line)
        if match:
            value = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), match.group(2))
            result[match.group(1).strip()] = value.replace("\\:", ":").replace("\\=", "=")
    return result


def read_catalogue(sh3f: Path) -> list[FurnitureModel]:
    """All furniture models declared in one ``.sh3f`` file."""
    try:
        with zipfile.ZipFile(sh3f) as zf:
            text = zf.read(PROPERTIES).decode("latin-1")
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{sh3f} is corrupt or truncated ({err}); fetch it again ('make data').") from err
    except KeyError as err:
        raise DataError(f"{sh3f} has no {PROPERTIES}: not a Sweet Home 3D furniture library.") from err
    props = parse_properties(text)
    indices = sorted({int(k.split("#")[1]) for k in props if k.startswith("id#")})
    models = []
    for i in indices:
        get = lambda field, default="", i=i: props.get(f"{field}#{i}", default)  # noqa: E731
        rotation = get("modelRotation")
        models.append(
            FurnitureModel(
                model_key=f"{sh3f.stem}:{get('id')}",
                name=get("name"),
                category=get("category"),
                tags=[t.strip() for t in get("tags").split(",") if t.strip()],
                creator=get("creator") or "unknown",
                width=float(get("width", "100")),
                depth=float(get("depth", "100")),
                height=float(get("height", "100")),
                model_path=get("model").lstrip("/"),
                icon_path=get("icon").lstrip("/"),
                rotation=tuple(float(x) for x in rotation.split()) if rotation else None,
                sh3f=sh3f,
            )
        )
    return models


# --------------------------------------------------------------------------- meshes


def _unzipped(sh3f: Path) -> Path:
    """Folder holding the extracted ``.sh3f`` (extracted once, marked complete)."""
    def unzip(tmp: Path) -> None:
        try:
            with zipfile.ZipFile(sh3f) as zf:
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DataError(f"{sh3f} is corrupt or truncated ({err}); fetch it again.") from err

    return _extract_once(data_dir() / "cache" / "sh3f" / f"{sh3f.stem}-{sh3f.stat().st_size}", unzip)


MESH_CACHE_VERSION = 1


def _mesh_cache_path(model: FurnitureModel) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.model_key)
    return data_dir() / "cache" / f"meshes-v{MESH_CACHE_VERSION}" / f"{slug}.npz"


def load_mesh(model: FurnitureModel) -> dict:
    """The model's mesh, normalised: z-up, centred, scaled to its real size in cm.

    Returns a dict with ``vertices`` (V,3 float32), ``normals`` (V,3), ``faces`` (F,3 int32),
    ``part`` (F, int: material group of each face) and ``colours`` (P,4 float RGBA in 0..1,
    a textured material contributes its texture's mean colour). Parsed once with trimesh, then
    read from ``data/cache``. Raises :class:`DataError` if the mesh cannot be read.
    """
    cache = _mesh_cache_path(model)
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    mesh = _parse_mesh(model)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **mesh)
    os.replace(tmp, cache)
    return mesh


def _material_colour(visual) -> np.ndarray:
    material = getattr(visual, "material", None)
    colour = np.array([0.8, 0.8, 0.8, 1.0])
    if material is None:
        return colour
    diffuse = getattr(material, "diffuse", None)
    if diffuse is None and hasattr(material, "baseColorFactor"):
        diffuse = material.baseColorFactor
    if diffuse is not None:
        colour = np.asarray(diffuse, float) / 255.0
    image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
    if image is not None:
        mean = np.asarray(image.convert("RGB").resize((16, 16)), float).reshape(-1, 3).mean(0)
        colour[:3] = colour[:3] * mean / 255.0
    return colour


def _parse_mesh(model: FurnitureModel) -> dict:
    import trimesh  # slow import: only when a mesh is actually parsed

    path = _unzipped(model.sh3f) / model.model_path
    if not path.exists():
        raise DataError(f"model file {model.model_path} missing from {model.sh3f.name}")
    try:
        scene = trimesh.load(path, force="scene", process=False)
        geometries = scene.dump() if len(scene.geometry) else []
    except Exception as err:  # trimesh raises many kinds on broken files
        raise DataError(f"cannot read mesh {model.model_path}: {err}") from err
    geometries = [g for g in geometries if len(getattr(g, "faces", [])) > 0]
    if not geometries:
        raise DataError(f"mesh {model.model_path} has no faces")

    verts, faces, parts, colours, offset = [], [], [], [], 0
    for index, geom in enumerate(geometries):
        verts.append(np.asarray(geom.vertices, np.float64))
        faces.append(np.asarray(geom.faces, np.int64) + offset)
        parts.append(np.full(len(geom.faces), index))
        colours.append(_material_colour(geom.visual))
        offset += len(geom.vertices)
    v = np.concatenate(verts)
    if model.rotation is not None:  # Sweet Home 3D rotates the raw model before sizing it
        v = v @ np.asarray(model.rotation).reshape(3, 3).T
    lo, hi = v.min(0), v.max(0)
    extent = np.where(hi - lo > 1e-9, hi - lo, 1.0)
    v = (v - (lo + hi) / 2) / extent * np.array([model.width, model.height, model.depth])
    v = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)  # y-up (SH3D) -> z-up (pybullet)
    f = np.concatenate(faces)
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    return {
        "vertices": v.astype(np.float32),
        "normals": np.asarray(normals, np.float32),
        "faces": f.astype(np.int32),
        "part": np.concatenate(parts).astype(np.int32),
        "colours": np.asarray(colours, np.float32),
    }


def load_icon(model: FurnitureModel):
    """The model's catalogue icon as an RGBA PIL image, or None if it is missing or broken."""
    from PIL import Image

    try:
        with zipfile.ZipFile(model.sh3f) as zf:
            return Image.open(io.BytesIO(zf.read(model.icon_path))).convert("RGBA")
    except Exception:  # a bad icon only costs the extra catalogue view
        return None
