"""The certify pipeline stage: params (sigma null = the model card's train_sigma), outputs and their schema."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from certification.errors import InputError
from certification.fileio import sha256_file
from support.prespec import FROZEN_UTC, freeze_project_protocol
from support.dossier_outputs import PROTOCOL
from support.oracle import conv_onnx, write_split

CLASSES = ["nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma"]
CERTIFY = {"sigma": None, "n0": 20, "n": 300, "alpha": 0.01, "max_examples": 6, "seed": 3,
           "confidence": 0.95, "radii": [0.0, 0.1, 0.25]}


def _workspace(root: Path, certify: dict, train_sigma: float = 0.25, frozen: bool = True) -> None:
    (root / "models").mkdir()
    (root / "data").mkdir()
    conv_onnx(root / "models" / "model.onnx", (3, 8, 8), num_classes=4, seed=5)
    (root / "models" / "model.json").write_text(json.dumps(
        {"sha256": "x", "class_names": CLASSES, "malignant_classes": CLASSES[2:], "train_sigma": train_sigma}))
    rng = np.random.default_rng(2)
    write_split(root / "data" / "test.npz", rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, size=12))
    (root / "params.yaml").write_text(yaml.safe_dump({"train": {"sigma": 0.5}, "certify": certify,
                                                          "runtime": {"certify_batch_size": 100}}))
    if frozen:
        (root / "params.yaml").write_text(yaml.safe_dump({**yaml.safe_load((root / "params.yaml").read_text()),
                                                          "gate": PROTOCOL}))
        freeze_project_protocol(root)


def test_certify_stage_writes_every_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path, CERTIFY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    from pipeline.certify import main

    assert main() == 0
    access = json.loads(Path("results/test_access.json").read_text())
    assert access["stage"] == "certify" and access["opened_utc"] > access["protocol_frozen_utc"] == FROZEN_UTC
    records = [json.loads(line) for line in Path("results/certify.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["sigma"] == 0.25 for r in records)
    assert Path("results/certify.tsv").read_text().startswith("idx\tlabel\tpredict\tradius\tcorrect\ttime\n")
    metrics = json.loads(Path("metrics/certify.json").read_text())
    for key in ("model", "data", "params", "confidence", "bound_method", "n_examples", "clean_accuracy", "abstention_rate",
                "average_certified_radius", "median_radius", "curve", "per_class", "class_names", "radii", "runtime",
                "noise", "throughput"):
        assert key in metrics, key
    assert metrics["params"] == {"sigma": 0.25, "n0": 20, "n": 300, "alpha": 0.01, "seed": 3, "batch_size": 100, "max_examples": 6}
    assert metrics["data"]["n_examples_total"] == 12 and len(metrics["model"]["sha256"]) == 64
    assert set(metrics["per_class"]) == set(CLASSES)
    assert sum(c["n_examples"] for c in metrics["per_class"].values()) == 6
    assert [row["radius"] for row in metrics["curve"]] == [0.0, 0.1, 0.25]
    curve = Path("plots/certify_curve.csv").read_text().splitlines()
    assert curve[0] == "radius,certified_accuracy,lower_bound" and len(curve) == 4
    first = metrics["curve"][0]
    assert first["count"] == sum(r["correct"] for r in records) and first["lower_bound"] <= first["certified_accuracy"]


def test_certify_stage_needs_a_positive_sigma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path, CERTIFY, train_sigma=0.0)
    monkeypatch.chdir(tmp_path)
    from pipeline.certify import main

    with pytest.raises(InputError, match="train_sigma"):
        main()
    assert sorted(p.name for p in Path("results").iterdir()) == ["protocol.json"]


def test_certify_stage_rejects_unknown_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path, {**CERTIFY, "n1": 5})
    monkeypatch.chdir(tmp_path)
    from pipeline.certify import main

    with pytest.raises(InputError, match="certify.n1"):
        main()


def test_certify_refuses_to_open_the_test_split_without_a_frozen_protocol(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path, CERTIFY, frozen=False)
    monkeypatch.chdir(tmp_path)
    from pipeline.certify import main

    with pytest.raises(InputError, match="results/protocol.json: file not found"):
        main()
    assert not Path("results/certify.jsonl").exists() and not Path("results/test_access.json").exists()


def test_batch_size_in_certify_names_its_new_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """certify.batch_size never changes a certificate: it lives in runtime: (no stage's params), and the old key says so."""
    _workspace(tmp_path, {**CERTIFY, "batch_size": 100})
    monkeypatch.chdir(tmp_path)
    from pipeline.params import certify_params

    with pytest.raises(InputError, match=r"certify.batch_size' moved to 'runtime.certify_batch_size'"):
        certify_params({"train_sigma": 0.25})


def test_a_rerun_keeps_the_first_opening_of_the_test_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-certifying (e.g. after the protocol was changed and frozen again) never moves the first test read later."""
    _workspace(tmp_path, CERTIFY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    from pipeline.certify import main

    assert main() == 0
    first = Path("results/test_access.json").read_bytes()
    assert main() == 0 and Path("results/test_access.json").read_bytes() == first
    write_split(Path("data/test.npz"), np.zeros((12, 8, 8, 3), np.uint8), np.zeros(12, np.int64))  # another split
    assert main() == 0 and Path("results/test_access.json").read_bytes() != first


def test_the_ray_backend_writes_the_local_stage_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        ray_cluster: object) -> None:
    """runtime.certify_backend: ray (default workers: one per CPU, 2 on the tests' local Ray) gives the local stage's
    certificates (JSONL and TSV, timing aside), summary and curve, and the gate reaches the same verdict on them;
    only timings and the runtime block differ."""
    from certification.cli import main as smoothcert

    outputs = {}
    for backend in ("local", "ray"):
        root = tmp_path / backend
        root.mkdir()
        _workspace(root, CERTIFY)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["runtime"]["certify_backend"] = backend
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        card = json.loads((root / "models" / "model.json").read_text())
        card["sha256"] = sha256_file(root / "models" / "model.onnx")
        (root / "models" / "model.json").write_text(json.dumps(card))
        monkeypatch.chdir(root)
        monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
        from pipeline.certify import main

        assert main() == 0
        assert smoothcert(["gate", "--results", "results/certify.jsonl", "--protocol", "params.yaml",
                           "--model-json", "models/model.json", "--out", "metrics/gate.json"]) in (0, 1)
        records = [{**json.loads(line), "seconds": None} for line in Path("results/certify.jsonl").read_text().splitlines()]
        records.append([line.split("\t")[:-1] for line in Path("results/certify.tsv").read_text().splitlines()])
        metrics = json.loads(Path("metrics/certify.json").read_text())
        gate = json.loads(Path("metrics/gate.json").read_text())
        outputs[backend] = (records, metrics, Path("plots/certify_curve.csv").read_text(), gate)
    (local_records, local_metrics, local_curve, local_gate), (ray_records, ray_metrics, ray_curve, ray_gate) = outputs.values()
    assert ray_records == local_records and ray_curve == local_curve and ray_gate == local_gate
    assert ray_metrics["runtime"]["backend"] == "ray" and ray_metrics["runtime"]["workers"] == 2
    untimed = lambda m: {k: v for k, v in m.items() if k not in ("runtime", "throughput")}  # noqa: E731
    assert untimed(ray_metrics) == untimed(local_metrics)


def test_backend_settings_in_certify_name_their_place_in_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path, {**CERTIFY, "backend": "ray"})
    monkeypatch.chdir(tmp_path)
    from pipeline.params import certify_params

    with pytest.raises(InputError, match=r"certify.backend' moved to 'runtime.certify_backend'"):
        certify_params({"train_sigma": 0.25})
    params = yaml.safe_load(Path("params.yaml").read_text())
    del params["certify"]["backend"]
    params["runtime"]["certify_backend"] = "spark"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(InputError, match=r"'runtime.certify_backend' must be one of local, ray, got 'spark'$"):
        certify_params({"train_sigma": 0.25})


def test_certify_stage_with_lighting_records_the_covariance_and_mahalanobis_radii(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _workspace(tmp_path, {**CERTIFY, "lighting": {"directions": "dc+ramps", "tau": 0.05}})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    from pipeline.certify import main

    assert main() == 0
    rows = [json.loads(line) for line in Path("results/certify.jsonl").read_text().splitlines()]
    assert list(rows[0])[4:6] == ["radius", "mahalanobis_radius"]
    assert all(r["radius"] == pytest.approx(0.25 * r["mahalanobis_radius"], rel=1e-12) for r in rows)
    noise = json.loads(Path("metrics/certify.json").read_text())["noise"]
    assert noise["covariance"] == {"directions": "dc+ramps", "tau": 0.05, "tau_norm": pytest.approx(0.05 * np.sqrt(192)),
                                   "k": 9, "d": 192, "sigma": 0.25, "chw": [3, 8, 8], "formula": noise["covariance"]["formula"]}
    assert "lighting:" in noise["spec"]


@pytest.mark.parametrize(("lighting", "train_sigma", "message"), [
    ({"directions": "dc", "tau": -0.05}, 0.25, "certify.lighting.tau must be a finite number >= 0"),
    ({"directions": "gradient", "tau": 0.05}, 0.25, "unknown lighting direction set 'gradient'"),
    ({"directions": "dc", "tau": 0.05}, 0.0, "set on a sigma of 0"),
])
def test_bad_lighting_params_exit_2_with_one_line_and_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                                lighting: dict, train_sigma: float, message: str) -> None:
    certify = {**CERTIFY, "lighting": lighting, **({"sigma": 0.0} if train_sigma == 0.0 else {})}
    _workspace(tmp_path, certify)
    monkeypatch.chdir(tmp_path)
    from pipeline.certify import main
    from pipeline.stage import run_stage

    with pytest.raises(SystemExit) as exited:
        run_stage("certify", main)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not Path("results/certify.jsonl").exists() and not Path("results/test_access.json").exists()
