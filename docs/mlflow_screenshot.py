"""The README's MLflow picture: MLflow's run comparison of the newest tracked sweep's points.

    ovkit sweep sweeps/seeds.yaml --profile smoke --engine local --track
    python docs/mlflow_screenshot.py            # -> docs/mlflow.png

Starts ``mlflow ui`` on the kit's store (``OVKIT_TRACKING_URI`` or ``runs/mlflow.db``) on a free
port, opens the comparison of the sweep's child runs in headless Chromium (Debian's ``chromium``,
driven by Playwright, as the browser test does) and saves a screenshot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from ovkit import track


def newest_sweep(uri: str) -> tuple[str, list[str]]:
    """(experiment id, child run ids) of the newest sweep parent run in store ``uri``."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(track.EXPERIMENT)
    if experiment is None:
        sys.exit(f"no '{track.EXPERIMENT}' experiment in {uri}: run a sweep with --track first")
    ids = [experiment.experiment_id]
    parents = mlflow.search_runs(ids, filter_string="tags.`ovkit.sweep` != ''", order_by=["start_time DESC"])
    if parents.empty:
        sys.exit(f"no tracked sweep in {uri}: ovkit sweep sweeps/seeds.yaml --profile smoke --track")
    parent = parents["run_id"].iloc[0]
    children = mlflow.search_runs(ids, filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                  order_by=["attributes.run_name ASC"])
    return experiment.experiment_id, children["run_id"].tolist()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=os.environ.get("OVKIT_TRACKING_URI") or track.default_uri())
    parser.add_argument("--out", default="docs/mlflow.png")
    args = parser.parse_args()
    chromium = os.environ.get("OVKIT_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")
    if not chromium:
        sys.exit("no chromium: apt-get install chromium (make test-browser does), or set OVKIT_CHROMIUM")
    experiment, runs = newest_sweep(args.uri)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):  # the server takes a few seconds to answer
            try:
                urllib.request.urlopen(base, timeout=1)
                break
            except OSError:
                time.sleep(1)
        from playwright.sync_api import sync_playwright

        url = f"{base}/#/compare-runs?runs={json.dumps(runs)}&experiments={json.dumps([experiment])}"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.wait_for_load_state("load")  # not "networkidle": the UI keeps polling the server
            page.wait_for_timeout(10_000)  # the tables and charts draw after the data arrives
            for close in page.get_by_role("button", name="Close").all():  # the assistant's side panel
                close.click()
            page.wait_for_timeout(2_000)
            page.screenshot(path=args.out)
            browser.close()
        print(f"{args.out}: MLflow's comparison of {len(runs)} runs ({url})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
