"""Edge CNN, noise-augmented training, ONNX export with parity (real onnxruntime), train/export stages."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from certification.data import synthetic
from certification.edge_cnn import build_model, count_flops, count_parameters, load_checkpoint, save_checkpoint
from certification.errors import InputError
from certification.fileio import sha256_file
from certification.onnx_export import (
    ParityError, check_parity, export_onnx, prediction_agreement, quantize_int8,
)
from certification.onnx_model import open_session, session_logits
from certification.training import TrainConfig, to_tensor, train_model
from support import REPO

CONFIG = {"num_classes": 4, "width": 4, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "image_size": 28}
TINY_PARAMS = {
    "data": {"source": "synthetic", "path": "", "image_size": 28, "n_train": 300, "n_val": 100, "n_test": 100, "seed": 3,
             "classes": [], "malignant_classes": []},
    "train": {"sigma": 0.25, "epochs": 2, "batch_size": 64, "lr": 0.01, "weight_decay": 0.0005, "width": 8, "seed": 1,
              "portable_kernels": True, "method": "gaussian", "class_weights": {},
              "consistency": {"m": 2, "lambda": 10.0, "eta": 0.5}, "macer": {"k": 2, "lambda": 12.0, "gamma": 8.0, "beta": 16.0}},
    "export": {"opset": 18, "quantize": False, "calibration_samples": 64, "parity_samples": 100, "seed": 2},
}


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic.generate_split(300, 28, 3, "train"), synthetic.generate_split(100, 28, 3, "val")


@pytest.fixture(scope="module")
def tiny_result(tiny_data):
    train, val = tiny_data
    config = TrainConfig(sigma=0.25, epochs=2, batch_size=64, lr=0.01, width=8, seed=1)
    return train_model(train.images, train.labels, val.images, val.labels, 4, config, threads=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_result):
    """The tiny model exported once (the dynamo exporter takes seconds)."""
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    export_onnx(tiny_result.model, path, (3, 28, 28), opset=18)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    monkeypatch.setenv("SMOOTHCERT_TORCH_THREADS", "1")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def test_flops_match_hand_count():
    model = build_model(CONFIG)
    w, k = 4, 4
    # 28x28 input: stem /2 -> 14x14, DS /2 -> 7x7, DS /1 -> 7x7, DS /2 -> 4x4, DS /1 -> 4x4.
    expected = (14 * 14 * w * 3 * 9
                + 7 * 7 * w * 9 + 7 * 7 * w * 2 * w
                + 7 * 7 * 2 * w * 9 + 7 * 7 * 2 * w * 4 * w
                + 4 * 4 * 4 * w * 9 + 4 * 4 * 4 * w * 8 * w
                + 4 * 4 * 8 * w * 9 + 4 * 4 * 8 * w * 8 * w
                + 8 * w * k)
    assert count_flops(model, (3, 28, 28)) == expected
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_normalisation_is_the_first_layer():
    model = build_model(CONFIG).eval()
    x = torch.rand(2, 3, 28, 28)
    manual = (x - torch.tensor(CONFIG["mean"]).view(1, 3, 1, 1)) / torch.tensor(CONFIG["std"]).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), manual)
    assert "normalize.mean" in model.state_dict() and "normalize.std" in model.state_dict()


def test_checkpoint_round_trip(tmp_path):
    model = build_model(CONFIG).eval()
    save_checkpoint(tmp_path / "m.pt", model, CONFIG)
    loaded, config = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(3, 3, 28, 28)
    assert config == CONFIG and not loaded.training
    assert torch.equal(model(x), loaded(x))
    save_checkpoint(tmp_path / "again.pt", model, CONFIG)
    assert sha256_file(tmp_path / "m.pt") == sha256_file(tmp_path / "again.pt")  # byte-stable
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable model checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


def test_training_records_history_and_is_deterministic(tiny_data, tiny_result):
    train, val = tiny_data
    assert [r.epoch for r in tiny_result.history] == [1, 2]
    assert 1 <= tiny_result.best_epoch <= 2
    assert tiny_result.best.val_accuracy_noisy == max(r.val_accuracy_noisy for r in tiny_result.history)
    assert tiny_result.config["train_sigma"] == 0.25 and not tiny_result.model.training
    global_rng = torch.random.get_rng_state()
    again = train_model(train.images, train.labels, val.images, val.labels, 4,
                        TrainConfig(sigma=0.25, epochs=2, batch_size=64, lr=0.01, width=8, seed=1), threads=1)
    assert torch.equal(torch.random.get_rng_state(), global_rng)  # no global randomness consumed
    assert again.history == tiny_result.history
    for key, value in tiny_result.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key


def test_training_rejects_negative_sigma(tiny_data):
    train, val = tiny_data
    with pytest.raises(InputError, match="sigma must be a finite number >= 0"):
        train_model(train.images, train.labels, val.images, val.labels, 4, TrainConfig(sigma=-0.1))


def test_export_parity_and_dynamic_batch(exported, tiny_data, tiny_result):
    _, val = tiny_data
    path = exported
    session = open_session(path, 1, "cpu")
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["logits"]
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # dynamic batch axis
    x = to_tensor(val.images).numpy()
    for batch in (1, 7, 100):
        with torch.no_grad():
            expected = tiny_result.model(torch.from_numpy(x[:batch])).numpy()
        assert np.allclose(session_logits(session, x[:batch]), expected, atol=1e-4)
    report = check_parity(tiny_result.model, path, x, sigma=0.25, seed=0, threads=1)
    assert report.passed and report.agreement_noisy >= 0.999 and report.max_abs_diff <= 1e-4


def test_exported_file_does_not_depend_on_the_checkout_folder(exported):
    """No exporter provenance (stack traces with absolute paths) in the artifact, so its SHA-256 is portable."""
    import onnx

    model = onnx.load(str(exported))
    assert all(len(node.metadata_props) == 0 for node in model.graph.node)
    repo = str(REPO).encode()
    assert repo not in exported.read_bytes()


def test_exported_graph_is_simplified_for_inference(exported):
    """The normalisation's division is folded into the first convolution and the pooling runs as
    GlobalAveragePool (certification.onnx_rewrites); parity with torch is checked above."""
    import onnx

    ops = [node.op_type for node in onnx.load(str(exported)).graph.node]
    assert ops[0] == "Sub" and ops[1] == "Conv" and "Div" not in ops
    assert "ReduceMean" not in ops and "GlobalAveragePool" in ops


def test_parity_check_fails_for_a_different_model(tmp_path, exported, tiny_data, tiny_result):
    _, val = tiny_data
    path = exported
    other = build_model(tiny_result.config).eval()  # fresh weights: not what was exported
    with pytest.raises(ParityError, match="parity check failed"):
        check_parity(other, path, to_tensor(val.images).numpy(), sigma=0.25, seed=0, threads=1)
    with pytest.raises(InputError, match="opset"):
        export_onnx(tiny_result.model, tmp_path / "x.onnx", (3, 28, 28), opset=9)


def test_int8_quantization_calibrated_on_noise(tmp_path, exported, tiny_data):
    _, val = tiny_data
    fp32, int8 = exported, tmp_path / "int8.onnx"
    x = to_tensor(val.images).numpy()
    quantize_int8(fp32, int8, x[:64], sigma=0.25, seed=0)
    session = open_session(int8, 1, "cpu")
    assert session_logits(session, x[:5]).shape == (5, 4)
    ops = {node.op_type for node in __import__("onnx").load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert prediction_agreement(fp32, int8, x, threads=1) > 0.5


def test_compacted_int8_file_computes_the_same_with_the_same_kernels(tmp_path, exported, tiny_data):
    """compact_qdq renames and drops zero points only: same logits bit for bit, same fused int8 kernels, smaller."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from certification.onnx_export import _NoisyCalibrationReader
    from certification.onnx_rewrites import compact_qdq

    x = to_tensor(tiny_data[1].images).numpy()
    reader = type("Reader", (_NoisyCalibrationReader, CalibrationDataReader), {})(x[:64], 0.25, 0)
    raw, small = tmp_path / "raw.onnx", tmp_path / "small.onnx"
    quantize_static(str(exported), str(raw), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    onnx.save(compact_qdq(onnx.load(str(raw))), str(small))
    assert small.stat().st_size < 0.9 * raw.stat().st_size
    np.testing.assert_array_equal(session_logits(open_session(raw, 1, "cpu"), x), session_logits(open_session(small, 1, "cpu"), x))
    fused = []
    for path in (raw, small):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        fused.append(sorted({n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}))
    assert fused[0] == fused[1] and {"QLinearConv", "QGemm"} <= set(fused[1])


def write_params(path: Path, params: dict) -> None:
    path.write_text(yaml.safe_dump(params), encoding="utf-8")


def test_train_and_export_stages_end_to_end(workdir):
    from pipeline import data, export, train

    write_params(workdir / "params.yaml", TINY_PARAMS)
    data.main()
    (workdir / "data/test.npz").unlink()  # sealed: train and export must not need the test split
    train.main()
    metrics = json.loads((workdir / "metrics/train.json").read_text())
    assert metrics["epochs"] == 2 and metrics["parameters"] > 0 and metrics["flops"] > 0
    assert 0 <= metrics["best"]["val_accuracy_noisy"] <= 1 and metrics["sigma"] == 0.25 and "test" not in metrics
    with open(workdir / "plots/train_history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_loss", "val_accuracy_clean", "val_accuracy_noisy"] and len(rows) == 2
    assert export.main() == 0
    card = json.loads((workdir / "models/model.json").read_text())
    assert card["sha256"] == sha256_file(workdir / "models/model.onnx") == card["fp32_sha256"]
    assert (workdir / "models/model.onnx").read_bytes() == (workdir / "models/model_fp32.onnx").read_bytes()
    assert card["input_shape"] == [None, 3, 28, 28] and card["input_range"] == [0, 1]
    assert card["quantization"] == "none" and card["path"] == "models/model.onnx" and card["train_sigma"] == 0.25
    assert card["class_names"] == list(synthetic.CLASS_NAMES) and card["malignant_classes"] == ["melanoma", "basal_cell_carcinoma"]
    assert card["training"] == {"method": "gaussian", "hyperparameters": {},
                                "class_weights": {name: 1.0 for name in synthetic.CLASS_NAMES}}  # from metrics/train.json
    exported = json.loads((workdir / "metrics/export.json").read_text())
    assert exported["parity"]["passed"] and exported["parity"]["agreement"] >= 0.999
    assert exported["model_sha256"] == card["sha256"]
    # torch and onnxruntime measure the same clean validation accuracy (parity), up to near-tie argmax flips.
    assert abs(exported["onnxruntime"]["accuracy_clean"] - metrics["best"]["val_accuracy_clean"]) <= 0.01
    assert exported["onnxruntime"]["n"] == TINY_PARAMS["data"]["n_val"]
    assert not list((workdir / "models").glob(".export-*"))

    # Quantized export: model.onnx becomes int8, model_fp32.onnx stays the float export.
    write_params(workdir / "params.yaml", {**TINY_PARAMS, "export": {**TINY_PARAMS["export"], "quantize": True}})
    assert export.main() == 0
    card = json.loads((workdir / "models/model.json").read_text())
    assert card["quantization"] == "int8" and card["quantization_method"] == "ptq" and card["sha256"] != card["fp32_sha256"]
    assert json.loads((workdir / "metrics/export.json").read_text())["quantized_agreement"]["agreement_noisy"] > 0.5

    # QAT: fine-tuned with fake quantization, shipped as int8 QDQ that follows the fake-quant model; fp32 unchanged.
    fp32_bytes = (workdir / "models/model_fp32.onnx").read_bytes()
    write_params(workdir / "params.yaml", {**TINY_PARAMS, "export": {**TINY_PARAMS["export"], "quantize": "qat",
                                                                      "qat": {"epochs": 1, "lr": 0.001, "batch_size": 64, "seed": 5}}})
    assert export.main() == 0
    card = json.loads((workdir / "models/model.json").read_text())
    assert card["quantization"] == "int8" and card["quantization_method"] == "qat" and card["qat"]["epochs"] == 1
    assert card["sha256"] == sha256_file(workdir / "models/model.onnx") and (workdir / "models/model_fp32.onnx").read_bytes() == fp32_bytes
    quantized = json.loads((workdir / "metrics/export.json").read_text())["quantized_agreement"]
    assert quantized["method"] == "qat" and quantized["qat"]["int8_vs_fake_quant_agreement_noisy"] >= 0.95
    assert quantized["size_ratio"] > 1.2 and len(quantized["qat"]["train_loss"]) == 1 and quantized["qat"]["float_parity"]["passed"]


@pytest.mark.parametrize(
    "section, change, message",
    [
        ("train", {"sigma": -0.5}, "sigma must be a finite number >= 0"),
        ("train", {"dropout": 0.1}, "unknown key 'train.dropout'"),
        ("train", {"epochs": "many"}, "'train.epochs' must be int"),
        ("train", {"lr": float("inf")}, "lr must be a finite number > 0"),
        ("train", {"method": "smoothadv"}, "unknown train.method 'smoothadv'; choose one of gaussian, consistency, macer"),
        ("train", {"class_weights": {"melanoma": -1}}, "class_weights.melanoma must be a finite number >= 0"),
        ("train", {"method": "consistency", "consistency": {"m": 0, "lambda": 10.0, "eta": 0.5}}, "consistency.m must be an integer >= 1"),
        ("train", {"consistency": {"m": 2, "lambda": 10.0}}, "missing key 'train.consistency.eta'"),
        ("train", {"macer": {"k": 2, "lambda": 1.0, "gamma": 8.0, "beta": 16.0, "tau": 1}}, "unknown key 'train.macer.tau'"),
        ("train", {"method": "macer", "sigma": 0.0}, "method macer needs noise"),
        ("export", {"opset": 7}, "opset"),
        ("export", {"quantize": None}, "missing key 'export.quantize'"),
        ("export", {"quantize": "int4"}, "export.quantize must be one of none, ptq, qat"),
        ("export", {"quantize": "qat", "qat": {"epochs": 1, "lr": 0.001, "batch_size": 64}}, "missing key 'export.qat.seed'"),
    ],
)
def test_train_and_export_reject_bad_params_without_outputs(workdir, section, change, message):
    from pipeline import export, train

    params = {**TINY_PARAMS, section: {k: v for k, v in {**TINY_PARAMS[section], **change}.items() if v is not None}}
    write_params(workdir / "params.yaml", params)
    (workdir / "data").mkdir()
    np.savez(workdir / "data/train.npz", images=np.zeros((4, 28, 28, 3), np.uint8), labels=np.zeros(4, np.int64))
    with pytest.raises(InputError, match=message):
        (train if section == "train" else export).main()
    assert not (workdir / "models").exists() and not (workdir / "metrics").exists()


def test_diverging_training_stops_with_one_line(tiny_data):
    """A learning rate that blows the loss up stops training with the epoch and batch (the stage writes its
    checkpoint only after training, so the previous model stays in place)."""
    train, val = tiny_data
    with pytest.raises(InputError, match=r"training diverged at epoch 1, batch \d+: the loss is (nan|inf)"):
        train_model(train.images, train.labels, val.images, val.labels, 4,
                    TrainConfig(sigma=0.25, epochs=2, batch_size=64, lr=1e12, width=8, seed=1), threads=1)


def test_train_stage_rejects_labels_outside_class_range(workdir):
    from pipeline import data, train

    write_params(workdir / "params.yaml", {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "n_train": 20, "n_val": 10, "n_test": 10}})
    data.main()
    with np.load(workdir / "data/val.npz") as archive:
        arrays = dict(archive)
    arrays["labels"][0] = 4
    np.savez(workdir / "data/val.npz", **arrays)
    with pytest.raises(InputError, match="label 4 is outside the class range"):
        train.main()
    assert not (workdir / "models").exists()
