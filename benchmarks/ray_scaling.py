"""Ray backend scaling: samples/s of Ray with 1, 2 and all local cores' workers against the single-process engine.

One local Ray is started (all usable cores) and kept for every arm. The arms run alternated, ``--repeats`` rounds
of [local, ray x W for each W], so the load of a shared machine falls on every arm alike; each Ray arm's wall time
includes starting its workers (process, imports, model load), and ``work`` excludes that. Ratios are the median over
rounds of (arm / the local run of the same round). Every arm's certificates are checked against the local run's
(timing aside). The per-task overhead is measured apart: tasks of one example at n0 = n = 1 (almost no work), wall
time per task of the Ray run minus the per-example time of the local run on the same examples.

    python benchmarks/ray_scaling.py --model models/model.onnx --data data/test.npz          # the default run
    python benchmarks/ray_scaling.py --examples 40 --repeats 1                               # a quicker look
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certification import defaults  # noqa: E402
from certification.certify_run import RunOptions, certify_files  # noqa: E402
from certification.onnx_model import default_threads  # noqa: E402
from certification.ray_backend import RaySettings  # noqa: E402


def _untimed(records: list[Any]) -> list[dict[str, Any]]:
    return [{**r.to_dict(), "seconds": 0} for r in records]


def run_arm(model: Path, data: Path, folder: Path, options: RunOptions, n0: int, n: int, workers: int | None,
            examples_per_task: int | None = None) -> dict[str, Any]:
    """One certification (local when ``workers`` is None); wall seconds, work seconds and the records."""
    out = folder / f"arm_{workers or 'local'}_{time.monotonic_ns()}.jsonl"
    ray = None if workers is None else RaySettings(workers=workers, examples_per_task=examples_per_task)
    started = time.perf_counter()
    outcome, _, _ = certify_files(model, data, out, options, n0, n, show_progress=False, ray=ray)
    wall = time.perf_counter() - started
    # Ray: the pool's time from the first task to the last result; local: the engine's loop (the records' seconds)
    work = outcome.runtime["wall_seconds"] if outcome.runtime else sum(r.seconds for r in outcome.records)
    return {"wall": wall, "work": work, "records": outcome.records, "runtime": outcome.runtime}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.onnx")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "test.npz")
    parser.add_argument("--examples", type=int, default=200, help="seeded subset (default 200: the default run)")
    parser.add_argument("--n0", type=int, default=defaults.N0)
    parser.add_argument("--n", type=int, default=defaults.N)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--overhead-examples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    for path in (args.model, args.data):
        if not path.is_file():
            raise SystemExit(f"{path}: not found; run `make repro` (or `dvc pull`) first, or pass --model/--data")
    import ray

    cores = default_threads()
    worker_counts = sorted({1, 2, cores})
    options = RunOptions(sigma=0.25, alpha=defaults.ALPHA, seed=defaults.SEED, batch_size=defaults.BATCH_SIZE,
                         max_examples=args.examples)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    started = time.perf_counter()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - started
    samples = args.examples * (args.n0 + args.n)
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for repeat in range(args.repeats):
            arms: dict[str, dict[str, Any]] = {"local": run_arm(args.model, args.data, folder, options, args.n0, args.n, None)}
            for workers in worker_counts:
                arms[f"ray x{workers}"] = run_arm(args.model, args.data, folder, options, args.n0, args.n, workers)
            for name, arm in arms.items():
                same = _untimed(arm["records"]) == _untimed(arms["local"]["records"])
                print(f"round {repeat + 1} {name:>8}: {samples / arm['wall']:>9,.0f} samples/s wall, "
                      f"{samples / arm['work']:>9,.0f} work ({arm['wall']:.1f} s){'' if same else '  CERTIFICATES DIFFER'}",
                      flush=True)
                if not same:
                    raise SystemExit("the Ray run's certificates differ from the local run's")
            rounds.append(arms)
        # per-task overhead: one example per task, almost no work (n0 = n = 1)
        tiny = RunOptions(**{**options.__dict__, "max_examples": args.overhead_examples})
        local_tiny = run_arm(args.model, args.data, folder, tiny, 1, 1, None)
        ray_tiny = run_arm(args.model, args.data, folder, tiny, 1, 1, cores, examples_per_task=1)
    tasks = ray_tiny["runtime"]["tasks"]
    overhead_ms = 1000 * (ray_tiny["work"] * cores - local_tiny["work"]) / tasks  # worker-seconds per task beyond the work
    ray.shutdown()

    print(f"\nmachine: {platform.processor() or platform.machine()}, {cores} usable cores; Ray {ray.__version__} started "
          f"in {ray_start:.1f} s; {args.examples} examples x (n0 {args.n0} + n {args.n}) = {samples:,} samples, "
          f"{args.repeats} alternated round(s)\n")
    print("| arm | workers x CPUs | samples/s (wall, incl. worker start) | ratio to local | samples/s (work) | ratio to local |")
    print("|---|---|---|---|---|---|")
    summary: dict[str, Any] = {}
    for name in rounds[0]:
        wall = statistics.median(samples / r[name]["wall"] for r in rounds)
        work = statistics.median(samples / r[name]["work"] for r in rounds)
        ratio_wall = statistics.median(r["local"]["wall"] / r[name]["wall"] for r in rounds)
        ratio_work = statistics.median(r["local"]["work"] / r[name]["work"] for r in rounds)
        runtime = rounds[0][name]["runtime"]
        shape = f"{runtime['workers']} x {runtime['cpus_per_worker']}" if runtime else "1 process"
        print(f"| {name} | {shape} | {wall:,.0f} | {ratio_wall:.2f} | {work:,.0f} | {ratio_work:.2f} |")
        summary[name] = {"samples_per_s_wall": wall, "samples_per_s_work": work, "ratio_wall": ratio_wall,
                         "ratio_work": ratio_work}
    print(f"\nper-task overhead: {overhead_ms:.1f} ms of worker time per task ({tasks} one-example tasks at n0 = n = 1 on "
          f"{cores} workers: {ray_tiny['work']:.2f} s against {local_tiny['work']:.2f} s locally)")
    if args.out:
        args.out.write_text(json.dumps({"arms": summary, "overhead_ms_per_task": overhead_ms, "ray_start_s": ray_start,
                                        "cores": cores, "examples": args.examples, "n0": args.n0, "n": args.n}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
