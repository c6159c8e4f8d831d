"""Catalogue build speed: cold build vs cached load, measured side by side in one run.

    python benchmarks/catalogue.py                 # smoke-sized catalogue
    python benchmarks/catalogue.py --profile default
    python benchmarks/catalogue.py --cold-meshes   # also re-parse every mesh (no data/cache)

Builds into a temporary stage cache so the user's artifacts are untouched. Prints the cold build
time, the cached load time, their ratio, and rendered images per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--cold-meshes", action="store_true", help="use an empty mesh cache too")
    args = parser.parse_args()

    root = Path(__file__).resolve().parent.parent
    params = yaml.safe_load((root / "params" / f"{args.profile}.yaml").read_text())
    tmp = Path(tempfile.mkdtemp(prefix="ovkit-bench-"))
    os.environ["OVKIT_ARTIFACTS"] = str(tmp / "artifacts")
    if args.cold_meshes:  # the .deb stays where it is; only the parse caches start empty
        from ovkit.data import sh3d

        files = sh3d.resolve_sh3f()
        os.environ["OVKIT_SH3D"] = str(files[0].parent)
        os.environ["OVKIT_DATA"] = str(tmp / "data")
    from ovkit import data

    kwargs = dict(n_models=params["N_MODELS"], colourways=params["COLOURWAYS"],
                  query_views=params["QUERY_VIEWS"], cold_fraction=params["COLD_FRACTION"],
                  seed=params.get("SEED", 0), render=params.get("RENDER") or {})
    try:
        t0 = time.perf_counter()
        cat = data.catalogue(**kwargs)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        data.catalogue(**kwargs)
        cached = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = cat.summary()
    images = s["n_catalog_views"] + s["n_query_views"]
    print(f"profile {args.profile}: {s['n_models']} models, {s['n_skus']} SKUs, {images} images")
    print(f"cold build   {cold:8.1f} s   ({images / cold:.0f} images/s"
          f"{', meshes parsed' if args.cold_meshes else ', meshes from data/cache'})")
    print(f"cached load  {cached:8.3f} s")
    print(f"ratio        {cold / cached:8.0f}x")


if __name__ == "__main__":
    main()
