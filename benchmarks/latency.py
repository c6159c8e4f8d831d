"""Latency of OneVision unpruned, OneVision with the best pruning policy and the MCA cascade,
measured side by side in one run on the same test queries (batch 1, one thread).

    python benchmarks/latency.py                      # smoke profile, policy from notebook 05's run
    python benchmarks/latency.py --profile default
    python benchmarks/latency.py --policy '{"delta": 2.0}'

Uses the stage cache (builds what is missing: for the default profile run notebooks 00-04 first).
The policy defaults to the one notebook 05 chose (``05.best_policy_settings`` in
``runs/<profile>/metrics.json``), else ``{"delta": 2.0}``. Prints p50 latencies and ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml


def load(profile: str):
    """The catalogue, models and logs of a profile, from the stage cache (as notebooks 03-04 build them)."""
    from ovkit import align, backbone, data, gen, mca, sim, vrq

    root = Path(__file__).resolve().parent.parent
    p = yaml.safe_load((root / "params" / f"{profile}.yaml").read_text())
    cat = data.catalogue(n_models=p["N_MODELS"], colourways=p["COLOURWAYS"], query_views=p["QUERY_VIEWS"],
                         cold_fraction=p["COLD_FRACTION"], render=p.get("RENDER", {}), seed=p["SEED"])
    maps, maps_artifact = backbone.cached_maps(cat)
    run = align.aligned(cat, maps, maps_artifact, p.get("ALIGN", {}))
    emb, tok = run["embeddings"], np.asarray(run["tokens"], np.float32)
    ids = vrq.semantic_ids(cat, emb, run["artifact"], p.get("VRQ", {}))
    cascade = mca.Cascade(cat, emb, mca.MCAConfig.from_overrides(p.get("MCA", {})))
    logs = sim.simulate(cat, emb, sim.SimConfig.from_overrides(p.get("SIM", {})), retrieve=cascade.retrieve)
    cascade.fit(logs.train_log, logs.train_histories)
    gen_cfg = gen.GenConfig.from_overrides(p.get("GEN", {}))
    model = gen.train_stages(cat, run, ids, logs, p.get("GEN", {}))["dpo"].model
    return cascade, logs, model, gen.session_queries(logs, emb, tok, gen_cfg.history)


def main() -> None:
    from ovkit import mca, prune
    from ovkit.paths import runs_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--queries", type=int, default=100, help="test queries timed one by one")
    parser.add_argument("--repeats", type=int, default=3, help="timings per query (median)")
    parser.add_argument("--policy", help='pruning settings as JSON, e.g. \'{"delta": 2.0}\'')
    args = parser.parse_args()

    settings = json.loads(args.policy) if args.policy else None
    metrics = runs_dir() / args.profile / "metrics.json"
    if settings is None and metrics.exists():
        recorded = json.loads(metrics.read_text()).get("05.best_policy_settings")
        settings = json.loads(recorded) if recorded else None
    policy = prune.Policy(**(settings if settings is not None else {"delta": 2.0}))

    started = time.perf_counter()
    cascade, logs, model, queries = load(args.profile)
    print(f"loaded the {args.profile} profile in {time.perf_counter() - started:.0f} s; "
          f"timing {args.queries} queries × {args.repeats}")
    n = min(args.queries, len(queries))
    frame = prune.sweep(model, queries, logs, [prune.Policy(), policy], timed=n, repeats=args.repeats)
    test = logs.test_sessions.head(n)
    histories = [logs.test_histories[s] for s in test["session"]]
    cascade_ms = mca.latency(cascade, test["view_id"].to_numpy(), histories, repeats=args.repeats)
    cascade_ms = cascade_ms.loc["total", "p50"]
    unpruned, pruned = frame.iloc[0], frame.iloc[1]
    print(f"{'system':<34}{'p50 ms':>8}{'HR@10':>8}")
    print(f"{'OneVision, unpruned':<34}{unpruned['latency_ms']:>8.2f}{unpruned['hr@10']:>8.3f}")
    print(f"{'OneVision, ' + policy.name:<34}{pruned['latency_ms']:>8.2f}{pruned['hr@10']:>8.3f}")
    print(f"{'MCA cascade':<34}{cascade_ms:>8.2f}")
    print(f"pruning speed-up {pruned['speedup']:.2f}× at batch 1 "
          f"({unpruned['batch64_ms'] / pruned['batch64_ms']:.2f}× in batches of 64); "
          f"OneVision pruned / MCA = {pruned['latency_ms'] / cascade_ms:.2f}")


if __name__ == "__main__":
    main()
