"""Single-core latency of the smoothed predictor (models/smoothed.onnx) for k = 32, 100, 256, fp32 and int8.

Each configuration runs in a fresh child process (so its peak resident memory, VmHWM, is its own, measured after
the timed graph calls and before the baseline loads the library): one onnxruntime
session with intra_op_num_threads = inter_op_num_threads = 1 and sequential execution, pinned to one CPU core,
``--warmup`` untimed calls, then ``--calls`` timed calls of one image -> class counts; median and 99th percentile in
milliseconds. Baseline, measured in the same child: the library's PREDICT at the same k on one core (numpy PCG64
noise drawn on the calling thread + the base model, ``SmoothedClassifier.predict_counts``), so the ratio
graph / library shows what moving the noise into the graph costs or saves. int8 is the project's static QDQ
quantizer (``certification.onnx_export.quantize_int8``, calibrated on noisy validation images at sigma).

The base model is ``--model`` (default models/model_fp32.onnx when the pipeline has run; otherwise an untrained
edge CNN of the default architecture, same cost). Writes ``--out`` (default benchmarks/device_latency.json, the
record the dossier's deployed-procedure section reads; :mod:`certification.device_latency`). Target: k = 100 at
most 30 ms p99 at 32x32 on one core.

``--lighting DIRECTIONS:TAU`` (e.g. ``dc+ramps:0.05``) also times the lighting graph of each configuration (noise
N(0, sigma^2 I + tau_norm^2 V^T V), :mod:`certification.lighting_graph`; rows ``fp32+lighting``, ``int8+lighting``),
its baseline being the library's PREDICT under the same covariance, so graph-lighting / graph-isotropic is the cost
of the lighting noise on the device.

    PYTHONPATH=$PWD python benchmarks/device_latency.py [--calls 200] [--ks 32 100 256] [--lighting dc+ramps:0.05] [--out FILE]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from certification.device_latency import LatencyRow, write_device_latency  # noqa: E402
from certification.fileio import sha256_file  # noqa: E402
from certification.platform_info import platform_record  # noqa: E402

TARGET = {"k": 100, "p99_ms": 30.0, "image_size": 32}

CHILD = r"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import onnxruntime as ort
from certification.onnx_model import session_options
from certification.smoothed_graph import read_smoothed_lighting

smoothed, base, calls, warmup = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
options = session_options(1)
session = ort.InferenceSession(smoothed, sess_options=options, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
k, sigma = int(meta["k"]), float(meta["sigma"])
shape = session.get_inputs()[0].shape
x = np.random.default_rng(0).random(shape, dtype=np.float32)
def timed(fn):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return np.array(out) * 1000.0
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
graph = timed(lambda: session.run(None, {"image": x}))
peak = hwm()  # onnxruntime + numpy + the session: what the device process holds
from certification.smoothing import SmoothedClassifier
library = SmoothedClassifier.from_onnx(base, sigma, batch_size=k, threads=1, provider="cpu", noise_threads=1,
                                       lighting=read_smoothed_lighting(smoothed))
library.prefetch = 0  # noise and inference take turns on the calling thread: one core
counter = iter(range(10**9))
baseline = timed(lambda: library.predict_counts(x, k, seed=0, indices=[next(counter)]))
print(json.dumps({"k": k, "median_ms": float(np.median(graph)), "p99_ms": float(np.percentile(graph, 99)),
                  "baseline_median_ms": float(np.median(baseline)), "peak_rss_mib": peak}))
"""


def untrained_model(path: Path, image_size: int) -> Path:
    """The default architecture (width 16, 4 classes), untrained: the same cost as the trained model."""
    from certification.edge_cnn import build_model
    from certification.onnx_export import export_onnx

    model = build_model({"num_classes": 4, "width": 16, "mean": [0.5] * 3, "std": [0.25] * 3, "in_channels": 3})
    export_onnx(model, path, (3, image_size, image_size), 18)
    return path


def calibration_images(image_size: int) -> np.ndarray:
    """Validation images (float32 NCHW in [0, 1]) when the pipeline has run, else uniform noise images."""
    val = ROOT / "data" / "val.npz"
    if val.is_file():
        with np.load(val) as npz:
            images = np.asarray(npz["images"][:256])
        if images.shape[1:3] == (image_size, image_size):
            return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    return np.random.default_rng(1).random((256, 3, image_size, image_size), dtype=np.float32)


def agreement(base: Path, graph: Path, k: int, sigma: float, alpha: float, examples: int) -> dict | None:
    """Graph + rule vs the library's PREDICT at the same k on the first ``examples`` test images (None without
    data/test.npz): the fraction of equal answers and each side's abstentions."""
    from certification.smoothing import SmoothedClassifier, predict_from_counts
    from certification.onnx_model import session_options
    import onnxruntime as ort

    test = ROOT / "data" / "test.npz"
    if examples <= 0 or not test.is_file():
        return None
    with np.load(test) as npz:
        count = min(examples, len(npz["labels"]))
        images = np.ascontiguousarray(npz["images"][:count].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    session = ort.InferenceSession(str(graph), sess_options=session_options(1), providers=["CPUExecutionProvider"])
    device = np.array([predict_from_counts(session.run(None, {"image": x[None]})[0], alpha) for x in images])
    library = np.array(SmoothedClassifier.from_onnx(base, sigma, batch_size=min(k, 1000), threads=1, provider="cpu")
                       .predict_many(images, k, alpha, seed=0))
    return {"k": k, "examples": int(count), "agreement": float(np.mean(device == library)),
            "graph_abstentions": int(np.sum(device == -1)), "library_abstentions": int(np.sum(library == -1))}


def lighting_option(text: str) -> tuple[str, float]:
    """DIRECTIONS:TAU (e.g. dc+ramps:0.05), checked by :func:`certification.lighting.check_lighting`."""
    from certification.errors import ParameterError
    from certification.lighting import check_lighting

    directions, _, tau = text.rpartition(":")
    try:
        return check_lighting(directions, float(tau), None, "--lighting")
    except (ValueError, ParameterError) as exc:
        raise argparse.ArgumentTypeError(f"expected DIRECTIONS:TAU such as dc+ramps:0.05 ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model_fp32.onnx")
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 100, 256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--agreement-examples", type=int, default=200,
                        help="test images for the graph-vs-library PREDICT agreement at --agreement-k (0: skip)")
    parser.add_argument("--agreement-k", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--lighting", type=lighting_option, default=None, metavar="DIRECTIONS:TAU",
                        help="also time the lighting graph (e.g. dc+ramps:0.05; rows PRECISION+lighting)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "device_latency.json")
    args = parser.parse_args(argv)

    from certification.lighting import smoothing_covariance
    from certification.onnx_export import quantize_int8
    from certification.smoothed_graph import base_input_chw, build_smoothed_graph

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        fp32 = args.model if args.model.is_file() else untrained_model(work / "untrained.onnx", args.image_size)
        source = "pipeline model" if args.model.is_file() else "untrained edge CNN (models/model_fp32.onnx absent)"
        bases = {"fp32": fp32}
        if "int8" in args.precisions:
            bases["int8"] = work / "int8.onnx"
            quantize_int8(fp32, bases["int8"], calibration_images(args.image_size), args.sigma, seed=5)
        covariance = None if args.lighting is None else smoothing_covariance(*args.lighting, args.sigma, base_input_chw(fp32))
        variants = [("", None)] + ([] if covariance is None else [("+lighting", covariance)])
        rows = []
        configs = [(precision, k, suffix, lighting) for precision in args.precisions for k in args.ks
                   for suffix, lighting in variants]
        for precision, k, suffix, lighting in configs:
            label = precision + suffix
            graph = build_smoothed_graph(bases[precision], work / f"smoothed-{label}-{k}.onnx", k, args.sigma,
                                         args.alpha, lighting=lighting)
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(graph.path), str(bases[precision]),
                                  str(args.calls), str(args.warmup)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(LatencyRow(label, k, round(r["median_ms"], 3), round(r["p99_ms"], 3), args.calls,
                                   round(r["peak_rss_mib"], 1), graph.sha256, round(r["baseline_median_ms"], 3)))
            print(f"{label} k={k:4d}: median {r['median_ms']:7.2f} ms, p99 {r['p99_ms']:7.2f} ms, peak RSS "
                  f"{r['peak_rss_mib']:6.1f} MiB; library PREDICT median {r['baseline_median_ms']:7.2f} ms, "
                  f"graph/library {r['median_ms'] / r['baseline_median_ms']:.2f}", flush=True)
        agreements = []
        for k in args.agreement_k if args.model.is_file() else []:
            graph = build_smoothed_graph(fp32, work / f"agreement-{k}.onnx", k, args.sigma, args.alpha)
            row = agreement(fp32, graph.path, k, args.sigma, args.alpha, args.agreement_examples)
            if row is not None:
                agreements.append(row)
                print(f"agreement fp32 k={k}: graph + rule vs library PREDICT {row['agreement']:.3f} on {row['examples']} "
                      f"test images (abstentions {row['graph_abstentions']} vs {row['library_abstentions']})", flush=True)
        target_row = next((r for r in rows if r.precision == "fp32" and r.k == TARGET["k"]), None)
        met = target_row is not None and target_row.p99_ms <= TARGET["p99_ms"] and args.image_size == TARGET["image_size"]
        command = "PYTHONPATH=$PWD python benchmarks/device_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_device_latency(
            args.out, rows, image_chw=(3, args.image_size, args.image_size),
            model_sha256={p: sha256_file(path) for p, path in bases.items()}, platform=platform_record(),
            command=command.strip(), date_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            target={**TARGET, "met": bool(met), "model": source}, agreement=agreements)
    print(f"target k={TARGET['k']} p99 <= {TARGET['p99_ms']} ms at {TARGET['image_size']}x{TARGET['image_size']} (fp32): "
          f"{'MET' if met else 'NOT MET'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
