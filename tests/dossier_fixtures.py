"""Small, self-consistent pipeline outputs for dossier and signing tests (a real tiny ONNX file included)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.fileio import sha256_file, write_json_atomic
from certification.noise_sampling import NOISE_SPEC, noise_kernels, tail_bound

CLASSES = ["nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma"]
MALIGNANT = ["melanoma", "basal_cell_carcinoma"]
SIZE = 8
RADII = [0.0, 0.125, 0.25, 0.5]
SIGMA, N0, N, ALPHA, CONF = 0.25, 10, 100, 0.001, 0.95


def write_onnx(path: Path, seed: int = 0) -> None:
    """Flatten + linear layer: float32 [N,3,8,8] in [0,1] -> logits [N,4]."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(3 * SIZE * SIZE, 4)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "B")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "B"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 4])], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _split(path: Path, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n).astype(np.int64)
    fitz = (np.arange(n) % 6 + 1).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8), labels=labels, fitzpatrick=fitz,
             hair=rng.random(n, dtype=np.float32), illumination=rng.random(n, dtype=np.float32),
             vignette=rng.random(n, dtype=np.float32), blur=rng.random(n, dtype=np.float32))
    return {"n": n, "sha256": sha256_file(path),
            "class_counts": {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)},
            "fitzpatrick_counts": {r: int((fitz == k).sum()) for k, r in enumerate(["I", "II", "III", "IV", "V", "VI"], 1)}}


def _records(labels: np.ndarray, accuracy: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i, label in enumerate(labels):
        u = rng.random()
        if u < accuracy:
            pred, radius = int(label), float(np.round(rng.uniform(0.05, 0.9), 6))
        elif u < accuracy + 0.05:
            pred, radius = -1, 0.0
        else:
            pred, radius = int((label + 1) % 4), float(np.round(rng.uniform(0.05, 0.3), 6))
        n_a = N if pred == -1 else int(N * 0.9)
        rows.append({"index": i, "label": int(label), "prediction": pred, "correct": pred == int(label), "radius": radius,
                     "n0": N0, "n": N, "n_a": n_a, "alpha": ALPHA, "sigma": SIGMA, "seed": 3, "seconds": 0.01,
                     "counts_selection": [N0, 0, 0, 0], "counts_estimation": [n_a, N - n_a, 0, 0]})
    return rows


def _curve(rows: list[dict], n: int) -> list[dict]:
    out = []
    for r in RADII:
        k = sum(1 for x in rows if x["correct"] and x["radius"] >= r)
        out.append({"radius": r, "certified_accuracy": k / n, "lower_bound": certified_rate_bound(k, n, ALPHA, CONF).lower,
                    "count": k})
    return out


def make_outputs(root: Path, accepted: bool = True, n_test: int = 60) -> Path:
    """Write every input of the dossier stage under ``root``; ``accepted`` picks a passing or failing model."""
    root = Path(root)
    write_onnx(root / "models" / "model.onnx")
    model_sha = sha256_file(root / "models" / "model.onnx")
    splits = {"train": _split(root / "data" / "train.npz", 24, 1), "val": _split(root / "data" / "val.npz", 16, 2),
              "test": _split(root / "data" / "test.npz", n_test, 3)}
    write_json_atomic(root / "data" / "datasheet.json", {
        "source": "synthetic", "generator_version": "test-1", "seed": 7, "image_size": SIZE, "classes": CLASSES,
        "malignant_classes": MALIGNANT, "malignant_indices": [2, 3], "splits": splits})
    write_json_atomic(root / "models" / "model.json", {
        "path": "models/model.onnx", "sha256": model_sha, "fp32_sha256": model_sha, "opset": 18,
        "onnxruntime_version": "1.30.0", "torch_version": "2.13.0", "input_name": "input", "output_name": "logits",
        "input_shape": [None, 3, SIZE, SIZE], "input_range": [0, 1], "class_names": CLASSES, "malignant_classes": MALIGNANT,
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "parameters": 772, "flops": 1536,
        "quantization": "none", "architecture": "tiny-linear", "train_sigma": SIGMA})
    write_json_atomic(root / "metrics" / "train.json", {"epochs": 2, "sigma": SIGMA, "val_accuracy_clean": 0.8,
                                                         "val_accuracy_noisy": 0.7, "seconds": 3.5})
    write_json_atomic(root / "metrics" / "export.json", {"opset": 18, "parity": {"max_abs_logit_diff": 1e-6, "argmax_agreement": 1.0}})
    with np.load(root / "data" / "test.npz") as npz:
        labels = npz["labels"]
    rows = _records(labels, 0.9 if accepted else 0.3, seed=11)
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "results" / "certify.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    abstained = sum(r["prediction"] == -1 for r in rows)
    radii = [r["radius"] for r in rows if r["correct"]]
    write_json_atomic(root / "metrics" / "certify.json", {
        "model": {"path": "models/model.onnx", "sha256": model_sha},
        "data": {"path": "data/test.npz", "sha256": splits["test"]["sha256"], "n_examples_total": n_test},
        "params": {"sigma": SIGMA, "n0": N0, "n": N, "alpha": ALPHA, "seed": 3, "batch_size": 100, "max_examples": 0},
        "confidence": CONF, "bound_method": "clopper-pearson-minus-alpha", "n_examples": n,
        "clean_accuracy": certified_rate_bound(correct, n, ALPHA, CONF).to_dict(),
        "abstention_rate": proportion_bound(abstained, n, CONF).to_dict(),
        "average_certified_radius": sum(radii) / n, "median_radius": float(np.median([r["radius"] for r in rows])),
        "curve": _curve(rows, n), "per_class": {c: {"n_examples": int((labels == k).sum())} for k, c in enumerate(CLASSES)},
        "throughput": {"examples_per_second": 12.5, "samples_per_second": 1375.0},
        "noise": {"spec": NOISE_SPEC, "kernels": noise_kernels(), "tail_bound_per_certificate": tail_bound(N0 + N, (3, 32, 32))}})
    gate_r, thr = 0.25, 0.45
    k = sum(1 for r in rows if r["correct"] and r["radius"] >= gate_r)
    cert = certified_rate_bound(k, n, ALPHA, CONF)
    abst = proportion_bound(abstained, n, CONF)
    criteria = [
        {"name": "certified_accuracy", "description": f"certified accuracy at radius {gate_r}", "estimate": cert.estimate,
         "bound": cert.lower, "bound_kind": "lower", "threshold": thr, "comparison": ">=", "passed": cert.lower >= thr,
         "successes": k, "trials": n, "bound_method": cert.method},
        {"name": "abstention_rate", "description": "abstention rate", "estimate": abst.estimate, "bound": abst.upper,
         "bound_kind": "upper", "threshold": 0.35, "comparison": "<=", "passed": abst.upper <= 0.35,
         "successes": abstained, "trials": n, "bound_method": abst.method}]
    clean = certified_rate_bound(correct, n, ALPHA, CONF)
    criteria.append({"name": "clean_accuracy", "description": "clean accuracy of the smoothed classifier",
                     "estimate": clean.estimate, "bound": clean.lower, "bound_kind": "lower", "threshold": 0.6,
                     "comparison": ">=", "passed": clean.lower >= 0.6, "successes": correct, "trials": n,
                     "bound_method": clean.method})
    failed = [c["name"] for c in criteria if not c["passed"]]
    write_json_atomic(root / "metrics" / "gate.json", {
        "verdict": "REJECT" if failed else "ACCEPT", "mode": "fixed", "radius": gate_r,
        "protocol": {"radius": gate_r, "min_certified_accuracy_lower": thr, "max_abstention_rate": 0.35, "confidence": CONF},
        "protocol_sha256": "ab" * 32, "model_sha256": model_sha, "n_examples": n, "alpha": ALPHA,
        "criteria": criteria, "failed": failed})
    write_json_atomic(root / "metrics" / "evaluate.json", {
        "subgroups": {"flagged": [{"field": "fitzpatrick", "group": "VI", "n_examples": 8, "lower_bound": 0.1,
                                   "underpowered": True}], "groups": []},
        "abstentions": {"confidence": CONF, "limit": 0.35, "overall": abst.to_dict(), "groups": [], "exceeds_limit": []},
        "least_robust": [],
        "corruptions": [{"name": name, "severity": s, "l2_mean": l2 * s, "covered_share": 0.0 if l2 * s > 0.5 else 0.5,
                         "coverage": "not covered" if l2 * s > 0.5 else "partial", "accuracy_smoothed": 0.7 - 0.05 * s,
                         "accuracy_base": 0.72 - 0.06 * s} for name, l2 in (("brightness", 0.8), ("jpeg", 0.15)) for s in (1, 2)],
        "attack": {"method": "pgd-l2-smoothadv", "n_examples": 10, "candidates": 1, "confirmed_contradictions": 0,
                   "radii": [0.0, 0.25], "empirical_robust_accuracy": [{"radius": 0.25, "accuracy": 0.6, "upper_bound": 0.8}],
                   "certified_accuracy": [{"radius": 0.25, "certified_accuracy": 0.5, "lower_bound": 0.3}]},
        "quantization": None})
    return root
