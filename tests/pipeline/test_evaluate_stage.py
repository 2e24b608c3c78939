"""The evaluate stage end to end on a tiny trained edge CNN (int8 artifact), and quantization drift on its own."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from certification.edge_cnn import build_model, save_checkpoint
from certification.failure_modes.quantization_drift import quantization_drift
from certification.fileio import sha256_file, write_json_atomic
from certification.onnx_export import export_onnx, quantize_int8
from certification.records import certify_jsonl_text
from support.linear_fixture import write_certify_summary, CHW, DIM, certify_records, make_split, nchw, shared_linear_fixture
from support import REPO

REPO_ROOT = REPO
SIGMA, ALPHA = 0.25, 0.01
TOP_KEYS = {"subgroups", "abstentions", "least_robust", "corruptions", "corruptions_clean", "attack", "quantization"}


def _brightness_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images whose class is "mean brightness above 0.5"; margins are L2 distances to that boundary."""
    rng = np.random.default_rng(seed)
    margins = rng.uniform(-0.6, 0.6, n)
    noise = rng.uniform(-0.1, 0.1, (n, DIM))
    noise -= noise.mean(axis=1, keepdims=True)
    images = (0.5 + margins[:, None] / np.sqrt(DIM) + noise).reshape(n, *CHW).astype(np.float32)
    return np.clip(images, 0, 1), (margins > 0).astype(np.int64), margins


def _train_edge_cnn() -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    x, y, _ = _brightness_data(256, 1)
    config = {"architecture": "edge-dscnn-v1", "num_classes": 2, "width": 4, "mean": [0.5] * 3, "std": [0.1] * 3, "in_channels": 3}
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(150):
        batch = torch.randint(0, len(images), (64,), generator=generator)
        noisy = images[batch] + SIGMA * torch.randn(images[batch].shape, generator=generator)
        loss = torch.nn.functional.cross_entropy(model(noisy), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), config


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate-stage")
    model, config = _train_edge_cnn()
    for folder in ("models", "data", "results", "metrics"):
        (root / folder).mkdir()
    save_checkpoint(root / "models/model.pt", model, config)
    export_onnx(model, root / "models/model_fp32.onnx", CHW, 18)
    calibration, _, _ = _brightness_data(64, 2)
    quantize_int8(root / "models/model_fp32.onnx", root / "models/model.onnx", calibration, SIGMA, 0)
    x, y, _ = _brightness_data(30, 3)
    rng = np.random.default_rng(4)
    arrays = {
        "images": np.clip(np.rint(x * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy(), "labels": y,
        "fitzpatrick": rng.integers(1, 7, 30), "hair": rng.uniform(0, 1, 30).astype(np.float32),
        "blur": rng.uniform(0, 1, 30).astype(np.float32),
    }
    np.savez(root / "data/test.npz", **arrays)
    records = certify_records(root / "models/model.onnx", nchw(arrays), y, SIGMA, 50, 500, ALPHA, 3,
                              data_sha256=sha256_file(root / "data/test.npz"))
    (root / "results/certify.jsonl").write_text(certify_jsonl_text(records))
    write_certify_summary(root / "metrics/certify.json", records, root / "models/model.onnx", root / "data/test.npz",
                          [0.0, 0.1, 0.25, 0.5], 0.95, ["dark", "bright"])
    write_json_atomic(root / "models/model.json", {"quantization": "int8", "class_names": ["dark", "bright"], "malignant_classes": ["bright"]})
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["certify"].update({"sigma": SIGMA, "alpha": ALPHA, "confidence": 0.95, "radii": [0.0, 0.1, 0.25, 0.5]})
    params["evaluate"] = {"max_examples": 12, "predict_n": 100, "attack_examples": 8, "attack_steps": 5, "attack_samples": 8,
                          "attack_radii": [0.1, 0.3, 1.0], "seed": 4, "confirm_n": 500, "least_robust": 3,
                          "quantization_examples": 6, "quantization_n": 300, "quantization_noise_samples": 20}
    params["gate"].update({"radius": 0.1, "min_certified_accuracy_lower": 0.3, "max_abstention_rate": 0.4})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _run_stage(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    from pipeline import evaluate

    monkeypatch.chdir(root)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    return evaluate.main()


def test_stage_writes_every_analysis_and_is_deterministic(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run_stage(project, monkeypatch) == 0
    first = json.loads((project / "metrics/evaluate.json").read_text())
    assert TOP_KEYS <= set(first)
    assert first["attack"]["confirmed_contradictions"] == 0
    assert len(first["corruptions"]) == 36 and {"name", "severity", "l2_mean", "accuracy_smoothed", "accuracy_base"} <= set(first["corruptions"][0])
    assert {g["field"] for g in first["subgroups"]["groups"]} == {"class", "fitzpatrick", "hair", "blur"}
    assert first["quantization"] is not None and first["quantization"]["agreement_under_noise"] > 0.8
    for path in [*first["plots"].values(), *(e["image"] for e in first["least_robust"])]:
        assert (project / path).is_file(), path
    assert (project / "plots/evaluate_attack_curve.csv").read_text().startswith("radius,")
    assert _run_stage(project, monkeypatch) == 0
    second = json.loads((project / "metrics/evaluate.json").read_text())
    first.pop("seconds"), second.pop("seconds")
    for document in (first, second):  # timings and the machine that measured them
        document["deployed"].pop("latency"), document["deployed"].pop("platform")
    assert first == second


def test_stage_fails_loudly_on_a_fabricated_certificate(project: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    records = [json.loads(line) for line in (copy / "results/certify.jsonl").read_text().splitlines()]
    for record in records:  # claim 20 times the certified radius
        record["radius"] *= 20.0
    (copy / "results/certify.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _run_stage(copy, monkeypatch) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "confirmed contradiction" in err[0]
    written = json.loads((copy / "metrics/evaluate.json").read_text())
    assert written["attack"]["confirmed_contradictions"] > 0


def test_stage_rejects_stale_certificates(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from certification.errors import InputError

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    summary = json.loads((copy / "metrics/certify.json").read_text())
    write_json_atomic(copy / "metrics/certify.json", {**summary, "model": {"path": "models/model.onnx", "sha256": "0" * 64}})
    with pytest.raises(InputError, match="different model"):
        _run_stage(copy, monkeypatch)


def test_quantization_drift_separates_a_faithful_from_a_broken_int8_artifact(tmp_path: Path) -> None:
    fixture = shared_linear_fixture()
    rng = np.random.default_rng(41)
    margins = rng.uniform(-0.6, 0.6, 12)
    arrays = make_split(fixture, margins, (margins > 0).astype(int), seed=42)
    images, labels, indices = nchw(arrays), arrays["labels"], np.arange(12)
    faithful = tmp_path / "int8.onnx"
    quantize_int8(fixture.onnx_path, faithful, images, SIGMA, 0)
    common = dict(sigma=SIGMA, radii=[0.0, 0.2, 0.4], noise_samples=50, n0=50, n=300, alpha=ALPHA, seed=9, confidence=0.95, threads=1)
    good = quantization_drift(fixture.onnx_path, faithful, images, labels, indices, **common)
    assert good.agreement_under_noise > 0.95 and good.prediction_agreement >= 0.8
    assert all(abs(p["difference"]) <= 0.25 for p in good.curve)
    # a "quantized" artifact that is really another model (boundary moved by 0.3): drift must show
    other = shared_linear_fixture(seed=0)
    shifted_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(DIM, 2))
    with torch.no_grad():
        shifted_model[1].weight.copy_(other.model[1].weight)
        shifted_model[1].bias.copy_(other.model[1].bias + torch.tensor([0.0, -40.0 * 0.3]))
    broken = tmp_path / "broken.onnx"
    export_onnx(shifted_model.eval(), broken, CHW, 18)
    bad = quantization_drift(fixture.onnx_path, broken, images, labels, indices, **common)
    assert bad.agreement_under_noise < good.agreement_under_noise - 0.1
    assert bad.curve[0]["difference"] < 0


def test_params_are_strict_and_optional_keys_default() -> None:
    from certification.errors import InputError
    from pipeline.evaluate import settings_from_params

    document = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    certify = {"params": {"sigma": 0.3, "alpha": 0.002}, "confidence": 0.9, "radii": [0.0, 0.5]}
    settings = settings_from_params(document, certify)
    assert (settings.sigma, settings.alpha, settings.confidence, settings.radii) == (0.3, 0.002, 0.9, (0.0, 0.5))
    assert settings.gate_radius == document["gate"]["radius"] and settings.confirm_n >= settings.predict_n
    document["evaluate"]["attack_stepz"] = 3
    with pytest.raises(InputError, match="unknown key 'evaluate.attack_stepz'"):
        settings_from_params(document, certify)
    for key in ("max_examples", "least_robust"):
        negative = {k: v for k, v in document["evaluate"].items() if k != "attack_stepz"} | {key: -1}
        with pytest.raises(InputError, match=f"'evaluate.{key}' must be >= 0"):
            settings_from_params({**document, "evaluate": negative}, certify)
    del document["evaluate"]["attack_stepz"], document["evaluate"]["seed"]
    with pytest.raises(InputError, match="missing key 'evaluate.seed'"):
        settings_from_params(document, certify)


def test_stage_writes_triage_and_the_deployed_procedure(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Triage of CERTIFY (clean, certified at r*) and of the deployed PREDICT at params deploy.n / deploy.alpha."""
    assert _run_stage(project, monkeypatch) == 0
    document = json.loads((project / "metrics/evaluate.json").read_text())
    params = yaml.safe_load((project / "params.yaml").read_text())
    records = [json.loads(line) for line in (project / "results/certify.jsonl").read_text().splitlines()]
    deployed = document["deployed"]
    assert (deployed["n"], deployed["alpha"]) == (params["deploy"]["n"], params["deploy"]["alpha"])
    assert deployed["n_examples"] == len(records) and deployed["abstention_rate"]["trials"] == len(records)
    assert deployed["latency"]["repeats"] == params["deploy"]["latency_repeats"] and deployed["latency"]["median_s"] > 0
    assert deployed["upper_within_gate_limit"] == (deployed["abstention_rate"]["upper"] <= params["gate"]["max_abstention_rate"])
    labels = np.array([r["label"] for r in records])
    for name, radius in (("clean", 0.0), ("certified", params["gate"]["radius"]), ("deployed", None)):
        triage = document["triage"][name]
        assert triage["radius"] == radius and triage["malignant_classes"] == ["bright"]
        counts = np.array(triage["confusion"]["counts"])
        assert triage["confusion"]["columns"] == ["dark", "bright", "abstain"]
        assert (counts.sum(axis=1) == np.bincount(labels, minlength=2)).all()
        assert triage["rates"]["sensitivity"]["trials"] == int((labels == 1).sum())
        assert sum(g["n_examples"] for g in triage["per_skin_type"]) == len(records)
    clean = document["triage"]["clean"]["confusion"]["counts"]
    assert [row[-1] for row in clean] == [sum(r["prediction"] == -1 and r["label"] == k for r in records) for k in (0, 1)]
    certified = document["triage"]["certified"]["counts"]
    flagged_at_r = sum(r["label"] == 1 and r["prediction"] == 1 and r["radius"] >= params["gate"]["radius"] for r in records)
    assert certified["malignant_flagged"] == flagged_at_r


@pytest.mark.parametrize("change, message", [
    ({"deploy": {"n": 1000, "alpha": 0.7, "latency_repeats": 5}}, "deploy.alpha"),
    ({"deploy": {"n": 1000, "alpha": 0.001, "latency_repeats": 5, "batch": 3}}, "unknown key 'deploy.batch'"),
])
def test_stage_rejects_bad_deploy_params(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, change: dict, message: str) -> None:
    from certification.errors import InputError

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    (copy / "params.yaml").write_text(yaml.safe_dump({**params, **change}, sort_keys=False))
    with pytest.raises(InputError, match=message):
        _run_stage(copy, monkeypatch)


def test_stage_needs_the_malignant_classes(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from certification.errors import InputError

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    write_json_atomic(copy / "models/model.json", {"quantization": "int8", "class_names": ["dark", "bright"]})
    with pytest.raises(InputError, match="malignant_classes"):
        _run_stage(copy, monkeypatch)
