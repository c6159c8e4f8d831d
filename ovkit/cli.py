"""The ``ovkit`` command: ``ovkit run``, ``ovkit fetch``, ``ovkit clean-partial``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovkit", description="OneVision reproducibility kit")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the notebooks of a profile with papermill")
    run.add_argument("--profile", default="smoke", help="params/<profile>.yaml (smoke, default, paper)")
    run.add_argument("--only", nargs="+", metavar="NN", help="run just these notebooks, e.g. --only 00 01")
    run.add_argument("--from", dest="start", metavar="NN", help="start at this notebook")
    run.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter (value read as YAML); repeatable")

    fetch = sub.add_parser("fetch", help="download and unpack the Sweet Home 3D furniture package")
    fetch.add_argument("--source", default="", help="a .deb, .sh3f or folder to use instead of apt-get")

    sub.add_parser("clean-partial", help="remove leftovers of interrupted stage builds")

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from .runner import run as run_profile

            report = run_profile(args.profile, args.only, args.start, args.overrides)
            print(f"report: {report}")
        elif args.command == "fetch":
            from .data import sh3d

            files = sh3d.resolve_sh3f(args.source)
            print(f"{len(files)} Sweet Home 3D catalogues ready in {files[0].parent}")
        elif args.command == "clean-partial":
            from .store import clean_partial

            print(f"removed {clean_partial()} partial artifact folder(s)")
    except Exception as err:  # a clear one-paragraph error, not a traceback, for expected failures
        from .data.sh3d import DataError
        from .runner import RunError

        if isinstance(err, (RunError, DataError, ValueError)):
            print(f"ovkit: error: {err}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
