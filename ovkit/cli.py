"""The ``ovkit`` command: ``run``, ``sweep``, ``fetch``, ``clean-partial``, ``compare``, ``resources``,
``export-folder``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import data, resources, track
from .data import folder, sh3d
from .data.sh3d import DataError
from .paths import runs_dir
from .results import compare_runs
from .runner import RunError, load_profile, merge_overrides, parse_overrides
from .runner import run as run_profile
from .store import clean_partial
from .sweep import ENGINES
from .sweep import run as run_sweep

TRACK_HELP = ("log to MLflow (pip install -e '.[track]'): OVKIT_TRACKING_URI, else runs/mlflow.db; "
              "on when OVKIT_TRACKING_URI is set")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovkit", description="OneVision reproducibility kit")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the notebooks of a profile with papermill")
    run.add_argument("--profile", default="smoke", help="params/<profile>.yaml (smoke, default, paper)")
    run.add_argument("--only", nargs="+", metavar="NN", help="run just these notebooks, e.g. --only 00 01")
    run.add_argument("--from", dest="start", metavar="NN", help="start at this notebook")
    run.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter (value read as YAML); repeatable")
    run.add_argument("--track", action="store_true", help=TRACK_HELP)

    sweep = sub.add_parser("sweep", help="run seeds x a parameter grid, each point a full run (Ray or local)")
    sweep.add_argument("spec", help="a sweep spec (sweeps/seeds.yaml) or its name in sweeps/ (seeds)")
    sweep.add_argument("--profile", help="the profile every point starts from (default: the spec's)")
    sweep.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a parameter in every point (value read as YAML); repeatable")
    sweep.add_argument("--engine", choices=ENGINES,
                       help="ray: each point a Ray task (default when ray is installed); "
                            "local: one after another")
    sweep.add_argument("--address", help="join a running Ray cluster: auto or host:port (default: local Ray)")
    sweep.add_argument("--cpus-per-run", type=int, help="CPUs (and torch threads) per point (default 2)")
    sweep.add_argument("--gpus-per-run", type=float, default=0, help="GPUs per point (Ray; default 0)")
    sweep.add_argument("--track", action="store_true", help=TRACK_HELP)

    fetch = sub.add_parser("fetch", help="download and unpack the Sweet Home 3D furniture package")
    fetch.add_argument("--source", default="", help="a .deb, .sh3f or folder to use instead of apt-get")

    sub.add_parser("clean-partial", help="remove leftovers of interrupted stage builds")

    compare = sub.add_parser("compare", help="list the metrics that differ between two runs (exit 1 if any)")
    compare.add_argument("run_a", help="a run folder (runs/smoke, or a copy) or a profile name")
    compare.add_argument("run_b")
    compare.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: exact)")
    compare.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    compare.add_argument("--timings", action="store_true", help="compare timing metrics too")

    used = sub.add_parser("resources", help="print a run's CPU seconds and peak memory per notebook")
    used.add_argument("run", help="a run folder (runs/default, runs/cold-start/default) or a profile name")

    export = sub.add_parser("export-folder", help="write a built catalogue as a dataset folder (items.csv, "
                                                  "images.csv, PNGs)")
    export.add_argument("destination", help="the folder to write (must be empty or new)")
    export.add_argument("--profile", default="smoke", help="the catalogue of this profile's parameters")
    export.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a catalogue parameter (N_MODELS, COLOURWAYS, ...); repeatable")

    args = parser.parse_args(argv)
    tracking = getattr(args, "track", False) or bool(os.environ.get(track.TRACKING_ENV))
    try:
        if tracking and args.command in ("run", "sweep"):
            track.require()  # before the run, not after an hour of it
        if args.command == "run":
            report = run_profile(args.profile, args.only, args.start, args.overrides)
            print(f"report: {report}")
            if tracking:
                run_id = track.log_run(report.parent, report.parent.name)
                print(f"MLflow: run {run_id} in {track.default_uri()}")
        elif args.command == "sweep":
            summary = run_sweep(args.spec, args.profile, args.overrides, args.engine, args.address,
                                args.cpus_per_run, args.gpus_per_run,
                                track=tracking)
            print(f"summary: {summary}")
        elif args.command == "fetch":
            files = sh3d.resolve_sh3f(args.source)
            print(f"{len(files)} Sweet Home 3D catalogues ready in {files[0].parent}")
        elif args.command == "clean-partial":
            print(f"removed {clean_partial()} partial artifact folder(s)")
        elif args.command == "compare":
            return _compare(args)
        elif args.command == "resources":
            _print_resources(args.run)
        elif args.command == "export-folder":
            root = _export(args)
            print(f"wrote {root}: use it with  ovkit run -p DATA_SOURCE={root}")
    except Exception as err:  # a clear one-paragraph error, not a traceback, for expected failures
        if isinstance(err, (RunError, DataError, ValueError, FileNotFoundError, FileExistsError)):
            print(f"ovkit: error: {err}", file=sys.stderr)
            return 1
        raise
    return 0


def _export(args):
    """Build (or load) the catalogue of a profile's parameters and write it as a dataset folder."""
    values, _ = merge_overrides(load_profile(args.profile), parse_overrides(args.overrides))
    return folder.export(data.from_parameters(values), args.destination).resolve()


def _print_resources(run: str) -> None:
    folder = next((p for p in (Path(run), runs_dir() / run) if (p / "resources.json").exists()), None)
    if folder is None:
        raise FileNotFoundError(f"no resources.json in {run} or {runs_dir() / run}: a run writes it "
                                "(ovkit run --profile ...; make profile for a cold start)")
    print(f"{folder}: CPU seconds and peak memory (resources.json)")
    print("\n".join(resources.markdown(resources.read(folder))))


def _compare(args) -> int:
    differences = compare_runs(args.run_a, args.run_b, args.rtol, args.atol, args.timings)
    what = "metric" + ("s and timings" if args.timings else "s (quality; --timings adds timings)")
    if not differences:
        print(f"no metric differs: the {what} of {args.run_a} and {args.run_b} are equal "
              f"(rtol {args.rtol}, atol {args.atol})")
        return 0
    print(f"{len(differences)} metric(s) differ between {args.run_a} (a) and {args.run_b} (b):")
    for d in differences:
        print(f"  {d['key']:45s} a={d['a']!s:>14} b={d['b']!s:>14}  {d['why']}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
