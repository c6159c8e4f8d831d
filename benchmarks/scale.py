"""The kit at 10k / 100k / 1M SKUs: VRQ fit, trie, beam search and the cascade's recall (make bench-scale).

Synthetic catalogues (:func:`ovkit.scale.synthetic_catalogue`: 256-d, 32 types, 4 colourways per
product, 2 views per SKU, 1% new SKUs) are quantized by VRQ at the default budget (3 × 32 + OPQ
2 × 32) and at a OneSearch-sized one (4096/1024/512 + OPQ 2 × 256). Each measurement runs in its
own process (so peak memory is that step's), one size after the other, nothing else running:

- VRQ: fit + assignment + disambiguation seconds and peak resident memory (the catalogue's own
  arrays included), share of SKUs whose raw SID collides before disambiguation;
- trie: memory of its CSR tables;
- beam search (untrained model, default ``GenConfig``, 1 thread): p50 per call at batch 1 and 64,
  and at batch 1 with the exact output prior of earlier kit versions (every SKU scored);
- the output prior's top-M search (exact up to 50k SKUs, IVF above): its recall@M, the share of
  each photo's exact top-M SKUs (M = ``prior_neighbours``, 4096) it finds;
- the cascade's recall over the SKU vectors (1 thread): exact flat search vs ``MCA index="auto"``
  (flat up to 50k vectors, IVF above), p50 per single query, and the IVF's recall@200 against exact.

Timings are also given as ratios to the smallest size's row, all measured in this one run. Results go
to ``runs/bench-scale/`` (``scale.md``, ``scale.json``).

Usage: python benchmarks/scale.py [--sizes 10000 100000 1000000] [--out runs/bench-scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BUDGETS = {
    "default": {},  # VRQConfig's defaults: levels 32/32/32, OPQ 2 × 32
    "onesearch": {"levels": (4096, 1024, 512), "opq_codes": 2, "opq_size": 256},
}


def vrq_worker(n: int, budget: str, out: Path) -> dict:
    from ovkit import scale, vrq

    cat = scale.synthetic_catalogue(n)
    result = scale.quantize(cat, vrq.VRQConfig(**BUDGETS[budget]))
    np.savez(out / f"sids-{n}-{budget}.npz", codes=result.pop("codes"), sizes=result.pop("sizes"))
    return result


def serve_worker(n: int, out: Path) -> dict:
    import faiss
    import torch

    from ovkit import gen, scale

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    cat = scale.synthetic_catalogue(n)
    photos, _ = cat.queries(256)
    row = {}
    for budget in BUDGETS:
        saved = np.load(out / f"sids-{n}-{budget}.npz")
        start = time.perf_counter()
        trie = gen.Trie(saved["codes"], saved["sizes"])
        row[f"trie_{budget}_mb"] = trie.nbytes / 2**20
        row[f"trie_{budget}_s"] = time.perf_counter() - start
    saved = np.load(out / f"sids-{n}-default.npz")
    model = scale.generative_model(cat, saved["codes"], saved["sizes"])
    queries = scale.photo_queries(photos)
    start = time.perf_counter()
    model.prior_index()
    row["prior_index_s"] = time.perf_counter() - start
    # the top-M prior is exact up to GenConfig.prior_exact_max SKUs, an IVF search above: how much it finds
    row[f"prior_recall@{model.cfg.prior_neighbours}"] = model.prior_recall(torch.from_numpy(photos))
    beam = gen.GenConfig().beam  # the default GenConfig's width, given explicitly
    row["beam_b1_ms"] = scale.beam_latency(model, queries, 1, 40, beam=beam)
    row["beam_b64_ms"] = scale.beam_latency(model, queries, 64, 4, beam=beam)
    exact = scale.generative_model(cat, saved["codes"], saved["sizes"], {"prior_neighbours": n})
    row["beam_b1_exact_prior_ms"] = scale.beam_latency(exact, queries, 1, 20, beam=beam)
    del exact, model
    start = time.perf_counter()
    indexes = scale.cascade_indexes(cat)
    row["cascade_index_s"] = time.perf_counter() - start
    row["cascade_index"] = type(indexes["auto"]).__name__
    row["recall_flat_ms"] = scale.recall_latency(indexes["flat"], photos, 200, 100)
    row["recall_auto_ms"] = scale.recall_latency(indexes["auto"], photos, 200, 100)
    row["recall@200_auto"] = scale.recall_agreement(indexes["auto"], indexes["flat"], photos[:200])
    row["peak_gb"] = scale.peak_rss_gb()
    return row


def run_worker(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


RATIOS = ["vrq_default_fit_s", "vrq_onesearch_fit_s", "beam_b1_ms", "beam_b64_ms", "beam_b1_exact_prior_ms",
          "recall_flat_ms", "recall_auto_ms"]


def table(rows: list) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows).set_index("n_items")
    for key in RATIOS:
        frame[f"{key} ×"] = frame[key] / frame[key].iloc[0]
    return frame.T.to_markdown(floatfmt=".3g")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-scale"))
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        kind, n = args.worker[0], int(args.worker[1])
        result = vrq_worker(n, args.worker[2], args.out) if kind == "vrq" else serve_worker(n, args.out)
        print(json.dumps(result))
        return
    rows = []
    for n in args.sizes:
        row = {"n_items": n}
        for budget in BUDGETS:
            print(f"{n:,} SKUs: VRQ at the {budget} budget ...", flush=True)
            for key, value in run_worker("vrq", str(n), budget).items():
                row[f"vrq_{budget}_{key}"] = value
        print(f"{n:,} SKUs: trie, beam search, recall ...", flush=True)
        row.update(run_worker("serve", str(n)))
        rows.append(row)
        (args.out / "scale.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(row), flush=True)
    text = table(rows)
    (args.out / "scale.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
