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


def main() -> None:
    from ovkit import mca, pipeline, prune
    from ovkit.paths import runs_dir
    from ovkit.runner import load_profile

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
    built = pipeline.load(load_profile(args.profile))  # the stage cache (builds what is missing)
    cascade, logs, model, queries = built.cascade, built.logs, built.model, built.queries()
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
