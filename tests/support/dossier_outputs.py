"""Small, self-consistent pipeline outputs for dossier and signing tests (a real tiny ONNX file included)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from certification.certify_run import noise_record
from certification.dataset_bounds import proportion_bound
from certification.failure_modes.deployed import measure_deployed_predict
from certification.failure_modes.corruptions import score
from certification.failure_modes.grouping import all_groups
from certification.failure_modes.report import deployed_block, triage_reports
from certification.failure_modes.subgroups import subgroup_report
from certification.fileio import sha256_file, write_json_atomic
from certification.gate import Protocol, evaluate
from certification.gate_io import decisions_from_certify, freeze_protocol, gate_document
from certification.prespecification import GitState, record_test_access, write_protocol_record
from certification.platform_info import platform_record
from certification.smoothing import SmoothedClassifier
from certification.certificate_arrays import CertificateArrays, as_arrays
from certification.records import CertifyRecord, certify_jsonl_text
from certification.summary import certify_metrics, write_certify_metrics

CLASSES = ["nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma"]
MALIGNANT = ["melanoma", "basal_cell_carcinoma"]
SIZE = 8
RADII = [0.0, 0.125, 0.25, 0.5]
SIGMA, N0, N, ALPHA, CONF = 0.25, 10, 100, 0.001, 0.95
DEPLOY_N, DEPLOY_ALPHA = 200, 0.01


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


def _records(labels: np.ndarray, accuracy: float, seed: int, model_sha: str, data_sha: str) -> list[CertifyRecord]:
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
        n_a = N // 2 if pred == -1 else int(N * 0.9)
        rows.append(CertifyRecord(index=i, label=int(label), prediction=pred, correct=pred == int(label), radius=radius,
                                  n0=N0, n=N, n_a=n_a, p_lower=0.8, alpha=ALPHA, sigma=SIGMA, seed=3, seconds=0.01,
                                  counts_selection=[N0, 0, 0, 0], counts_estimation=[n_a, N - n_a, 0, 0],
                                  model_sha256=model_sha, data_sha256=data_sha))
    return rows


RUNTIME = {"provider": "CPUExecutionProvider", "intra_op_num_threads": 1, "onnxruntime_version": "test", "noise_threads": 1,
           "platform": platform_record()}
PROTOCOL = {"radius": 0.25, "min_certified_accuracy_lower": 0.45, "min_malignant_recall_lower": 0.0,
            "max_abstention_rate": 0.35, "min_clean_accuracy": 0.6, "confidence": CONF, "mode": "fixed"}


FROZEN_UTC, OPENED_UTC = "2026-11-30T09:00:00.000000Z", "2026-11-30T09:05:00.000000Z"


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
        "quantization": "none", "architecture": "tiny-linear", "train_sigma": SIGMA,
        "training": {"method": "gaussian", "hyperparameters": {}, "class_weights": {name: 1.0 for name in CLASSES}},
        "platform": {"training": {**platform_record(), "torch_capability": "DEFAULT", "portable_kernels": True},
                     "export": platform_record()}})
    write_json_atomic(root / "metrics" / "train.json", {"epochs": 2, "sigma": SIGMA, "val_accuracy_clean": 0.8,
                                                         "val_accuracy_noisy": 0.7, "seconds": 3.5})
    write_json_atomic(root / "metrics" / "export.json", {"opset": 18, "parity": {"max_abs_logit_diff": 1e-6, "argmax_agreement": 1.0}})
    with np.load(root / "data" / "test.npz") as npz:
        labels = npz["labels"]
    rows = _records(labels, 0.9 if accepted else 0.3, 11, model_sha, splits["test"]["sha256"])
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "results" / "certify.jsonl").write_text(certify_jsonl_text(rows))
    write_certify_metrics(root / "metrics" / "certify.json", certify_metrics(
        rows, model={"path": "models/model.onnx", "sha256": model_sha},
        data={"path": "data/test.npz", "sha256": splits["test"]["sha256"], "n_examples_total": n_test},
        max_examples=0, radii=RADII, confidence=CONF, class_names=CLASSES, runtime=RUNTIME,
        noise=noise_record(N0 + N, (3, SIZE, SIZE)), batch_size=100))
    protocol = Protocol.from_dict(PROTOCOL)
    record = freeze_protocol(protocol, "params.yaml section 'gate'", GitState("0" * 40, True), now=FROZEN_UTC)
    write_protocol_record(root / "results" / "protocol.json", record)
    record_test_access(root / "results" / "test_access.json", record, "certify", "data/test.npz",
                       splits["test"]["sha256"], now=OPENED_UTC)
    decisions = decisions_from_certify(rows, protocol.radius, model_sha)
    verdict = evaluate(decisions, protocol, CLASSES, MALIGNANT, ALPHA, model_sha)
    write_json_atomic(root / "metrics" / "gate.json", gate_document(verdict, decisions))
    write_evaluate(root, rows)
    return root


def corruption_rows(arrays: CertificateArrays, settings: list[tuple[str, float]]) -> list[dict]:
    """Corruption results scored by the evaluate stage's own code, for changes of L2 size ``l2 * severity``
    (predictions: the certified ones, so accuracy equals clean accuracy)."""
    n = len(arrays)
    return [score(name, s, "level", float(s), arrays, np.full(n, l2 * s), arrays.prediction, arrays.prediction, CONF).to_dict()
            for name, l2 in settings for s in (1, 2)]


def write_evaluate(root: Path, rows: list[CertifyRecord]) -> None:
    """metrics/evaluate.json for ``rows``: real subgroups (the evaluate stage's code), canned other analyses."""
    protocol = Protocol.from_dict(PROTOCOL)
    with np.load(root / "data" / "test.npz") as npz:
        metadata = {k: npz[k] for k in ("fitzpatrick", "hair", "illumination", "vignette", "blur")}
    arrays = as_arrays(rows)
    groups = all_groups(arrays.label, {k: v[arrays.index] for k, v in metadata.items()}, CLASSES)
    subgroups = subgroup_report(arrays, groups, RADII, protocol.radius, protocol.min_certified_accuracy_lower, CONF).to_dict()
    abst = proportion_bound(int(arrays.abstained.sum()), len(rows), CONF)
    with np.load(root / "data" / "test.npz") as npz:  # the deployed PREDICT, measured on the real tiny ONNX model
        images = np.ascontiguousarray(npz["images"][arrays.index].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
    classifier = SmoothedClassifier.from_onnx(root / "models" / "model.onnx", SIGMA, batch_size=100, threads=1, provider="cpu")
    deployed = measure_deployed_predict(classifier, images, arrays.index.tolist(), arrays.prediction.tolist(), DEPLOY_N,
                                        DEPLOY_ALPHA, 5, CONF, 3)
    triage = triage_reports(arrays, np.asarray(deployed.predictions), {k: v[arrays.index] for k, v in metadata.items()},
                            CLASSES, MALIGNANT, CONF, protocol.radius, DEPLOY_N, DEPLOY_ALPHA)
    write_json_atomic(root / "metrics" / "evaluate.json", {
        "subgroups": subgroups,
        "abstentions": {"confidence": CONF, "limit": 0.35, "overall": abst.to_dict(), "groups": [], "exceeds_limit": []},
        "least_robust": [],
        "corruptions": corruption_rows(arrays, [("brightness", 0.8), ("jpeg", 0.15)]),
        "attack": {"method": "pgd-l2-smoothadv", "n_examples": 10, "candidates": 1, "confirmed_contradictions": 0,
                   "radii": [0.0, 0.25], "empirical_robust_accuracy": [{"radius": 0.25, "accuracy": 0.6, "upper_bound": 0.8}],
                   "certified_accuracy": [{"radius": 0.25, "certified_accuracy": 0.5, "lower_bound": 0.3}]},
        "quantization": None,
        "triage": triage,
        "deployed": deployed_block(deployed, protocol.max_abstention_rate)})
