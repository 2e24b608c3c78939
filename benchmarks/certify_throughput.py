"""Certification throughput: the engine against the onnxruntime ceiling and a reference-style torch loop.

For each image size, on one exported model (``certification.edge_cnn``, random weights: speed does not depend
on them), with the same batch size and threads:

(a) ceiling: bare ``session.run`` on pre-generated noisy inputs, in the same batch shapes CERTIFY uses;
(b) engine: ``SmoothedClassifier.certify_many`` end to end (noise, inference, counting, bounds);
(b0) the engine without its prefetch thread (noise drawn, then classified, in turn);
(b1) the engine as it was before the Box-Muller noise stream (numpy's float32 ziggurat), the "before" figure;
(b2) the engine on pre-drawn noise (its noise step copies ready noisy images): b2/a is what threads, hand-offs,
     copies and counting cost; b/b2 what drawing the noise costs on top, mostly by slowing inference on the
     cores next to it (shared caches, memory bandwidth, clock);
(c) reference: the loop of Cohen et al.'s ``core.py`` (torch eager model, ``x.repeat``, ``torch.randn_like`` noise
    per batch, ``argmax`` and a Python counting loop per batch).

All figures are noisy samples evaluated per second. b/a and b/c are medians over repeats of the ratio within a
repeat (the rows of a repeat run back to back, so drift of a shared machine cancels). Also reported: the cost of
the noise alone in ns per value, the engine's sampler against numpy's ziggurat. Prints b/a and b/c; writes a JSON
file with the machine's description. It also measures (unless ``--skip-memory``) the peak memory of certifying one 64x64 image at n = 100,000 (in a
child process that does not import torch). When onnxruntime offers CUDA (onnxruntime-gpu), every row is also
measured with the CUDA provider, the reference loop then running torch on the GPU as the original does
(``--providers`` picks the providers to measure).

    python benchmarks/certify_throughput.py --out benchmarks/results/certify_throughput.json
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certify_memory import MEMORY_IMAGE_SIZE, measure_memory  # noqa: E402  (beside this file)


def machine() -> dict[str, Any]:
    import onnxruntime
    import scipy
    import torch

    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable, "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _param(section: str, key: str, fallback: int) -> int:
    try:
        import yaml

        return int(yaml.safe_load((ROOT / "params.yaml").read_text())[section][key])
    except (OSError, KeyError, TypeError, ValueError):
        return fallback


def default_width() -> int:
    """The default model's width: params.yaml train.width (32 when the file or key is missing)."""
    return _param("train", "width", 32)


def default_batch_size() -> int:
    """The pipeline's certification batch: params.yaml certify.batch_size (1000 when missing)."""
    return _param("certify", "batch_size", 1000)


def ziggurat_noise(generator: np.random.Generator, x: np.ndarray, sigma: float, out: np.ndarray) -> None:
    """x + sigma * z into ``out``, z from numpy's float32 ziggurat: the engine's noise before the Box-Muller stream."""
    generator.standard_normal(dtype=np.float32, out=out)
    np.multiply(out, np.float32(sigma), out=out)
    np.add(out, x, out=out)


def noise_cost(size: int, sigma: float, repeats: int, images: int = 500) -> dict[str, float]:
    """Nanoseconds per noise value (x + e for ``images`` images), the engine's sampler against numpy's float32
    ziggurat (``Generator.standard_normal``, then times sigma plus x: the sampler used before), one thread."""
    from certification.noise_sampling import NoiseStream

    chw = (3, size, size)
    x = np.random.default_rng(0).random(chw, dtype=np.float32)
    out = np.empty((images, *chw), dtype=np.float32)
    values = out.size

    def stream() -> None:
        NoiseStream(0, 0, 1, chw, sigma).add_to(x, out)

    def ziggurat() -> None:
        ziggurat_noise(np.random.default_rng(0), x, sigma, out)

    times: dict[str, list[float]] = {"box_muller_stream": [], "numpy_ziggurat": []}
    for _ in range(max(3, repeats)):
        for name, fn in (("box_muller_stream", stream), ("numpy_ziggurat", ziggurat)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / values * 1e9)
    result = {name: statistics.median(v) for name, v in times.items()}
    result["stream_over_ziggurat"] = statistics.median(a / b for a, b in zip(times["box_muller_stream"], times["numpy_ziggurat"]))
    return result


def build_model(size: int, width: int, directory: Path) -> tuple[Any, Path]:
    """An edge_cnn model with random weights, exported to ONNX the way the export stage does."""
    import torch

    from certification.edge_cnn import build_model as build_edge_cnn
    from certification.onnx_export import export_onnx

    torch.manual_seed(0)
    model = build_edge_cnn({"num_classes": 4, "width": width, "mean": [0.6, 0.45, 0.4], "std": [0.2, 0.2, 0.2]}).eval()
    path = directory / f"edge_cnn_{size}.onnx"
    export_onnx(model, path, (3, size, size), opset=18)
    return model, path


def batch_plan(examples: int, n0: int, n: int, batch_size: int) -> list[int]:
    """The batch sizes CERTIFY runs: per example, n0 then n samples, each cut into batch_size pieces."""
    plan = []
    for _ in range(examples):
        for num in (n0, n):
            plan += [batch_size] * (num // batch_size) + ([num % batch_size] if num % batch_size else [])
    return plan


def _rates(samples: int, start: float, cpu: float) -> tuple[float, float]:
    """(samples per wall-clock second, samples per CPU second of this process, all threads)."""
    return samples / (time.perf_counter() - start), samples / max(time.process_time() - cpu, 1e-9)


def run_ceiling(session: Any, plan: list[int], inputs: np.ndarray) -> float:
    name = session.get_inputs()[0].name
    out = session.get_outputs()[0].name
    start, cpu = time.perf_counter(), time.process_time()
    for size in plan:
        session.run([out], {name: inputs[:size]})
    return _rates(sum(plan), start, cpu)


def engine_with_fill(base: Any, sigma: float, batch_size: int, noise_threads: int, fill: Any) -> Any:
    """The engine (same threads, buffers, hand-offs, inference and counting) with its noise step replaced by
    ``fill(job, start, batch)``: for the diagnosis rows only."""
    from certification.noise_sampling import NoisyCounter
    from certification.smoothing import SmoothedClassifier

    class Counter(NoisyCounter):
        def _fill(self, job: Any, start: int, batch: np.ndarray) -> None:
            fill(job, start, batch)

    class Engine(SmoothedClassifier):
        def _sample_noise(self, jobs: Any, chw: tuple[int, ...]) -> Any:
            counter = Counter(self.base_classifier.predict_labels, self.num_classes, self.sigma, self.batch_size,
                              tuple(chw), prefetch=self.prefetch, workers=self.noise_threads)
            return counter.count(jobs)

    return Engine(base, sigma, batch_size=batch_size, noise_threads=noise_threads)


def ziggurat_engine(base: Any, sigma: float, batch_size: int, noise_threads: int) -> Any:
    """The engine with the noise sampler it had before the Box-Muller stream: noise from numpy's float32 ziggurat
    (``Generator.standard_normal``, one generator per batch) then times sigma plus x. The "before" row."""

    def fill(job: Any, start: int, batch: np.ndarray) -> None:
        seeds = np.random.SeedSequence([job.seed, job.index, job.phase, start])
        ziggurat_noise(np.random.Generator(np.random.PCG64(seeds)), job.x, sigma, batch)

    return engine_with_fill(base, sigma, batch_size, noise_threads, fill)


def predrawn_engine(base: Any, sigma: float, batch_size: int, noise_threads: int, noisy: np.ndarray) -> Any:
    """The engine with drawing noise replaced by copying pre-drawn noisy images: what everything but the noise
    costs (its b/a), and so, next to the engine's row, what drawing the noise costs on top."""

    def fill(job: Any, start: int, batch: np.ndarray) -> None:
        np.copyto(batch, noisy[: len(batch)])

    return engine_with_fill(base, sigma, batch_size, noise_threads, fill)


def run_engine(classifier: Any, images: np.ndarray, n0: int, n: int) -> float:
    start, cpu = time.perf_counter(), time.process_time()
    classifier.certify_many(images, None, n0, n, 0.001, seed=0)
    return _rates(len(images) * (n0 + n), start, cpu)


def run_reference(model: Any, images: np.ndarray, n0: int, n: int, batch_size: int, sigma: float, num_classes: int,
                  device: str = "cpu") -> float:
    """Cohen et al.'s core.py Smooth.certify/_sample_noise on ``device`` (the original runs it on a CUDA GPU),
    timing the whole loop; ``model`` must already be on ``device``."""
    import torch
    from scipy.stats import norm
    from statsmodels.stats.proportion import proportion_confint

    def count_arr(arr: np.ndarray, length: int) -> np.ndarray:
        counts = np.zeros(length, dtype=int)
        for idx in arr:
            counts[idx] += 1
        return counts

    def sample_noise(x: torch.Tensor, num: int) -> np.ndarray:
        with torch.no_grad():
            counts = np.zeros(num_classes, dtype=int)
            for _ in range(math.ceil(num / batch_size)):
                this_batch_size = min(batch_size, num)
                num -= this_batch_size
                batch = x.repeat((this_batch_size, 1, 1, 1))
                noise = torch.randn_like(batch) * sigma
                predictions = model(batch + noise).argmax(1)
                counts += count_arr(predictions.cpu().numpy(), num_classes)
            return counts

    start, cpu = time.perf_counter(), time.process_time()
    for image in images:
        x = torch.from_numpy(image).to(device)
        c_hat = sample_noise(x, n0).argmax().item()
        n_a = sample_noise(x, n)[c_hat].item()
        p_a = proportion_confint(n_a, n, alpha=2 * 0.001, method="beta")[0]
        _ = sigma * norm.ppf(p_a) if p_a >= 0.5 else 0.0
    return _rates(len(images) * (n0 + n), start, cpu)


def bench_size(size: int, args: argparse.Namespace, directory: Path, provider: str) -> dict[str, Any]:
    import torch

    from certification.smoothing import SmoothedClassifier

    torch.set_num_threads(args.threads)
    model, path = build_model(size, args.width, directory)
    classifier = SmoothedClassifier.from_onnx(path, args.sigma, batch_size=args.batch_size, threads=args.threads, provider=provider,
                                              noise_threads=args.noise_threads)
    rng = np.random.default_rng(1)
    noisy = rng.random((3, size, size), dtype=np.float32) + rng.standard_normal((args.batch_size, 3, size, size), dtype=np.float32) * args.sigma
    noisy = np.ascontiguousarray(np.clip(noisy, -3, 4), dtype=np.float32)
    session = classifier.base_classifier.session
    session.run(None, {"input": noisy[:8]})  # warm-up
    # Enough examples that the ceiling row runs for --min-seconds: on many cores a row of two examples lasts a
    # tenth of a second, and thread start-up and a neighbour's burst of load then decide the ratio.
    one_example = batch_plan(1, args.n0, args.n, args.batch_size)
    rate, _ = run_ceiling(session, one_example, noisy)
    examples = max(args.examples, math.ceil(args.min_seconds * rate / sum(one_example)))
    images = rng.random((examples, 3, size, size), dtype=np.float32)
    plan = batch_plan(examples, args.n0, args.n, args.batch_size)
    serial = SmoothedClassifier(classifier.base_classifier, args.sigma, batch_size=args.batch_size, prefetch=0)
    before = ziggurat_engine(classifier.base_classifier, args.sigma, args.batch_size, classifier.noise_threads)
    predrawn = predrawn_engine(classifier.base_classifier, args.sigma, args.batch_size, classifier.noise_threads, noisy)
    # The reference runs where the original would: torch on CPU for the CPU rows, torch on the GPU for CUDA rows
    # (none when this torch has no CUDA).
    reference_device = "cpu" if provider == "cpu" else ("cuda" if torch.cuda.is_available() else None)
    reference_model = model if reference_device in (None, "cpu") else copy.deepcopy(model).to(reference_device)
    names = ("ceiling", "engine", "engine_serial", "engine_ziggurat", "engine_predrawn", "reference")
    rows: dict[str, list[float]] = {name: [] for name in names}
    cpu_rows: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved, so a burst of load on a shared machine hits every row alike
        runs = {"ceiling": lambda: run_ceiling(session, plan, noisy), "engine": lambda: run_engine(classifier, images, args.n0, args.n),
                "engine_serial": lambda: run_engine(serial, images, args.n0, args.n),
                "engine_ziggurat": lambda: run_engine(before, images, args.n0, args.n),
                "engine_predrawn": lambda: run_engine(predrawn, images, args.n0, args.n)}
        if reference_device is not None:
            runs["reference"] = lambda: run_reference(reference_model, images, args.n0, args.n, args.batch_size, args.sigma, 4,
                                                      reference_device)
        for name, run in runs.items():
            wall, cpu = run()
            rows[name].append(wall)
            cpu_rows[name].append(cpu)
    best = {k: max(v) for k, v in rows.items() if v}
    median = {k: statistics.median(v) for k, v in rows.items() if v}
    cpu_median = {k: statistics.median(v) for k, v in cpu_rows.items() if v}
    # Ratios are taken within each repeat (its rows ran back to back), then the median over repeats: on a shared
    # machine whose speed drifts between repeats this is steadier than a ratio of medians.
    def paired(num: str, den: str, table: dict[str, list[float]] = rows) -> float:
        return statistics.median(n / d for n, d in zip(table[num], table[den]))
    from certification.edge_cnn import count_flops, count_parameters

    result: dict[str, Any] = {
        "image_size": size, "provider": classifier.base_classifier.session_config["provider"], "examples": examples,
        "model": {"architecture": "edge-dscnn-v1", "width": args.width, "parameters": count_parameters(model),
                  "macs_per_sample": count_flops(model, (3, size, size))},
        "session": classifier.base_classifier.session_config,
        "noise_threads": classifier.noise_threads,
        "reference_device": reference_device,
        "samples_per_second": {"best": best, "median": median, "all": rows},
        "samples_per_cpu_second": {"median": cpu_median, "all": cpu_rows},
        "engine_over_ceiling": paired("engine", "ceiling"),
        "engine_over_ceiling_of_medians": median["engine"] / median["ceiling"],
        "engine_over_ceiling_best": best["engine"] / best["ceiling"],
        "engine_serial_over_ceiling": paired("engine_serial", "ceiling"),
        "engine_ziggurat_over_ceiling": paired("engine_ziggurat", "ceiling"),
        "engine_predrawn_over_ceiling": paired("engine_predrawn", "ceiling"),
        "engine_over_ceiling_cpu": paired("engine", "ceiling", cpu_rows),
        "engine_over_ceiling_per_repeat": [n / d for n, d in zip(rows["engine"], rows["ceiling"])],
    }
    if provider == "cpu":
        result["noise_ns_per_value"] = noise_cost(size, args.sigma, args.repeats)
    if "reference" in median:
        result["engine_over_reference"] = paired("engine", "reference")
        result["engine_over_reference_of_medians"] = median["engine"] / median["reference"]
        result["engine_over_reference_best"] = best["engine"] / best["reference"]
        result["engine_over_reference_per_repeat"] = [n / d for n, d in zip(rows["engine"], rows["reference"])]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--width", type=int, default=default_width(), help="edge_cnn width (default: params.yaml train.width)")
    parser.add_argument("--batch-size", type=int, default=default_batch_size(), help="default: params.yaml certify.batch_size")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, for every row")
    parser.add_argument("--providers", nargs="+", choices=("cpu", "cuda"), default=None,
                        help="execution providers to measure (default: cpu, and cuda when onnxruntime offers it)")
    parser.add_argument("--noise-threads", type=int, default=None, help="engine's noise threads (default: the cores the onnxruntime threads leave, at least 1)")
    parser.add_argument("--examples", type=int, default=2, help="examples per row, at least (see --min-seconds)")
    parser.add_argument("--min-seconds", type=float, default=1.5,
                        help="run each size with enough examples that its ceiling row lasts this long (default 1.5)")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", dest="memory", action="store_false", help="skip the peak-memory run (n = 100,000, 64x64)")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "certify_throughput.json")
    args = parser.parse_args()

    import onnxruntime

    report: dict[str, Any] = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": []}
    report["settings"]["out"] = str(args.out)
    cuda_available = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    providers = args.providers or ["cpu"] + (["cuda"] if cuda_available else [])
    if "cuda" in providers and not cuda_available:
        parser.error(f"onnxruntime {onnxruntime.__version__} here offers no CUDAExecutionProvider; install onnxruntime-gpu or drop --providers cuda")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for size in [] if args.memory_only else args.sizes:
            for provider in providers:
                row = bench_size(size, args, directory, provider)
                report["rows"].append(row)
                med = row["samples_per_second"]["median"]
                line = (f"{size}x{size} {row['provider']}: ceiling {med['ceiling']:,.0f}/s, engine {med['engine']:,.0f}/s"
                        f" -> b/a = {row['engine_over_ceiling']:.3f} (serial engine {med['engine_serial']:,.0f}/s,"
                        f" b0/a = {row['engine_serial_over_ceiling']:.3f}; before (ziggurat noise) {med['engine_ziggurat']:,.0f}/s,"
                        f" {row['engine_ziggurat_over_ceiling']:.3f}; on pre-drawn noise {med['engine_predrawn']:,.0f}/s,"
                        f" {row['engine_predrawn_over_ceiling']:.3f}; per CPU-second b/a = {row['engine_over_ceiling_cpu']:.3f})")
                if "reference" in med:
                    line += f"; reference {med['reference']:,.0f}/s -> b/c = {row['engine_over_reference']:.2f}"
                if "noise_ns_per_value" in row:
                    cost = row["noise_ns_per_value"]
                    line += (f"; noise {cost['box_muller_stream']:.1f} ns/value vs numpy ziggurat {cost['numpy_ziggurat']:.1f}"
                             f" ({cost['stream_over_ziggurat']:.2f}x the time)")
                print(line, flush=True)
        if args.memory:
            path = directory / f"edge_cnn_{MEMORY_IMAGE_SIZE}.onnx"
            if not path.exists():
                build_model(MEMORY_IMAGE_SIZE, args.width, directory)
            report["memory"] = measure_memory(path, MEMORY_IMAGE_SIZE, args.batch_size, args.threads)
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
