"""Latency of OneVision unpruned, OneVision with the chosen pruning policy and the reference cascade,
timed in one loop on the same test queries (batch 1; interleaved per query in a random order, each
system warmed up, in --repeats separate rounds), plus the same queries in batches of 64 — once per
thread setting (--threads 1 2: torch and the BLAS/OpenMP pools of every system on that many threads),
because which system answers faster can change with the thread budget and the machine.

    python benchmarks/latency.py                      # smoke profile, policy from notebook 05's run
    python benchmarks/latency.py --profile default --threads 1 2
    python benchmarks/latency.py --policy '{"delta": 2.0}'

Uses the stage cache (builds what is missing: for the default profile run notebooks 00-04 first).
The policy defaults to the one notebook 05 chose on validation sessions (``05.best_policy_settings``
in ``runs/<profile>/metrics.json``), else ``{"delta": 2.0}``; the reference cascade is the cascade's
better index on validation sessions, as in notebooks 04-06. Prints p50 latencies and every speed-up
twice: the total-time ratio (Σ over the timed queries: throughput, what the ledger judges) and the
median per-query ratio, each with a bootstrap 95% interval over queries and rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    from ovkit import config, pipeline, prune, timing
    from ovkit.paths import runs_dir
    from ovkit.runner import load_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--queries", type=int, default=100, help="test queries timed one by one")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timing rounds (each query once per system per round; median per query)")
    parser.add_argument("--policy", help='pruning settings as JSON, e.g. \'{"delta": 2.0}\'')
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="thread settings to time under, one after another (default: 1)")
    args = parser.parse_args()

    settings = json.loads(args.policy) if args.policy else None
    metrics = runs_dir() / args.profile / "metrics.json"
    if settings is None and metrics.exists():
        recorded = json.loads(metrics.read_text()).get("05.best_policy_settings")
        settings = json.loads(recorded) if recorded else None
    policy = prune.Policy(**(settings if settings is not None else {"delta": 2.0}))

    started = time.perf_counter()
    built = pipeline.load(load_profile(args.profile))  # the stage cache (builds what is missing)
    index, cascade, _ = built.reference_cascade()
    logs, model, queries, beam = built.logs, built.model, built.queries(), built.gen_cfg.beam
    print(f"loaded the {args.profile} profile in {time.perf_counter() - started:.0f} s; timing "
          f"{min(args.queries, len(queries))} test queries × {args.repeats}, one loop, random order")
    test = logs.test_sessions
    views, hists = test["view_id"].to_numpy(), [logs.test_histories[s] for s in test["session"]]
    run_cascade = cascade.runner(views, hists)
    systems = {"unpruned": prune.runner(model, queries, prune.Policy(), beam=beam),
               "pruned": prune.runner(model, queries, policy, beam=beam), "MCA": run_cascade}
    for threads in args.threads:
        result, times = prune.measure(model, queries, logs, policy, timed=args.queries, repeats=args.repeats,
                                      others={"MCA": run_cascade}, threads=threads, beam=beam)
        with config.threads(threads):
            batched = timing.batched(systems, len(times), batch=64, repeats=args.repeats)
        print(f"\n{threads} thread(s) ({os.cpu_count()} CPUs on this machine)")
        report(policy, index, result, times, batched)


def report(policy, index: str, result: dict, times, batched) -> None:
    """Print one thread setting's table and speed-ups."""
    from ovkit import timing

    def ratio(base, other):
        both = timing.speedups(times, base, other)
        return ", ".join(f"{kind} {r:.2f}× [{low:.2f}, {high:.2f}]" for kind, (r, low, high) in both.items())

    print(f"{'system':<34}{'p50 ms':>8}{'batch 64 ms':>13}{'HR@10':>8}")
    rows = (("OneVision, unpruned", "unpruned", result["hr@10_unpruned"]),
            (f"OneVision, {policy.name}", "pruned", result["hr@10_pruned"]),
            (f"MCA ({index} index)", "MCA", None))
    for label, column, hr in rows:
        quality = f"{hr:>8.3f}" if hr is not None else ""
        print(f"{label:<34}{times[column].median():>8.2f}{batched[column]:>13.2f}{quality}")
    print(f"pruning speed-up at batch 1 (unpruned ms / pruned ms, 95% CI): "
          f"{ratio('unpruned', 'pruned')}; in batches of 64: {batched['unpruned'] / batched['pruned']:.2f}×")
    print(f"cascade ms / OneVision ms at batch 1: unpruned {ratio('MCA', 'unpruned')}, "
          f"pruned {ratio('MCA', 'pruned')} (> 1: OneVision faster)")


if __name__ == "__main__":
    main()
