"""A user's ONNX that breaks the input contract, through a real onnxruntime session: NHWC input adapted, a fixed
batch of 1 made symbolic or looped, metadata declaring other units refused, and the scores match numpy's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from certification.errors import InputError
from certification.onnx_model import OnnxClassifier, adaptation_of, open_session, session_logits

K, C, H, W = 4, 3, 8, 8
WEIGHTS = np.random.default_rng(7).normal(size=(C * H * W, K)).astype(np.float32)


def _save(path: Path, nodes: list, input_shape: list, initializers: list, metadata: dict[str, str] | None = None) -> Path:
    graph = helper.make_graph(
        nodes, "user_model", [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [input_shape[0], K])],
        initializer=[numpy_helper.from_array(WEIGHTS, "w"), *initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def nchw_scores(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1) @ WEIGHTS


def nhwc_model(path: Path) -> Path:
    """Takes [N, H, W, C] (a TensorFlow-style export) and flattens it in NCHW order internally."""
    return _save(path, [helper.make_node("Transpose", ["image"], ["chw"], perm=[0, 3, 1, 2]),
                        helper.make_node("Flatten", ["chw"], ["flat"], axis=1),
                        helper.make_node("MatMul", ["flat", "w"], ["scores"])], ["N", H, W, C], [])


def fixed_batch_model(path: Path, pinned: bool) -> Path:
    """Input [1, C, H, W]; ``pinned``: a Reshape to the constant shape [1, C*H*W] that no symbolic batch can undo."""
    if pinned:
        shape = numpy_helper.from_array(np.array([1, C * H * W], dtype=np.int64), "shape")
        nodes = [helper.make_node("Reshape", ["image", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["scores"])]
        return _save(path, nodes, [1, C, H, W], [shape])
    nodes = [helper.make_node("Flatten", ["image"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["scores"])]
    return _save(path, nodes, [1, C, H, W], [])


def images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(1).random((n, C, H, W), dtype=np.float32)


def test_nhwc_input_gets_a_transpose_and_takes_nchw(tmp_path: Path) -> None:
    classifier = OnnxClassifier(nhwc_model(tmp_path / "nhwc.onnx"), threads=1, provider="cpu")
    assert classifier.input_chw == (C, H, W)
    assert any("NHWC" in step for step in classifier.session_config["input_adaptation"])
    x = images()
    np.testing.assert_allclose(classifier.logits(x), nchw_scores(x), rtol=1e-4, atol=1e-4)


def test_without_adaptation_the_nhwc_model_does_not_take_nchw(tmp_path: Path) -> None:
    """The check the adaptation is for: fed NCHW as it stands, the model would fail (or mis-read pixels)."""
    session = open_session(nhwc_model(tmp_path / "nhwc.onnx"), 1, "cpu", adapt=False)
    with pytest.raises(Exception):
        session.run(None, {"image": images()})


def test_fixed_batch_of_one_becomes_symbolic(tmp_path: Path) -> None:
    classifier = OnnxClassifier(fixed_batch_model(tmp_path / "b1.onnx", pinned=False), threads=1, provider="cpu")
    assert not classifier.adaptation.loop_batch
    assert any("symbolic" in step for step in classifier.adaptation.steps)
    x = images()
    np.testing.assert_allclose(classifier.logits(x), nchw_scores(x), rtol=1e-4, atol=1e-4)


def test_pinned_batch_of_one_runs_one_example_per_call(tmp_path: Path) -> None:
    path = fixed_batch_model(tmp_path / "pinned.onnx", pinned=True)
    classifier = OnnxClassifier(path, threads=1, provider="cpu")
    assert classifier.adaptation.loop_batch
    x = images(7)
    np.testing.assert_allclose(classifier.logits(x), nchw_scores(x), rtol=1e-4, atol=1e-4)
    session = open_session(path, 1, "cpu")
    assert adaptation_of(session).loop_batch
    np.testing.assert_allclose(session_logits(session, x, batch_size=4), nchw_scores(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key, value", [("input_range", "[0,255]"), ("input_units", "0-255"),
                                        ("normalization", "ImageNet mean/std applied by the caller")])
def test_metadata_declaring_other_units_is_refused(tmp_path: Path, key: str, value: str) -> None:
    path = _save(tmp_path / "units.onnx", [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
                                           helper.make_node("MatMul", ["flat", "w"], ["scores"])], ["N", C, H, W], [],
                 {key: value})
    with pytest.raises(InputError, match=r"\[0, 1\]") as info:
        OnnxClassifier(path, threads=1, provider="cpu")
    assert key in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["[0,1]", "0-1", "[0.0, 1.0]"])
def test_metadata_declaring_unit_range_is_accepted(tmp_path: Path, value: str) -> None:
    path = _save(tmp_path / "ok.onnx", [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
                                        helper.make_node("MatMul", ["flat", "w"], ["scores"])], ["N", C, H, W], [],
                 {"input_range": value, "normalization": "inside the graph"})
    classifier = OnnxClassifier(path, threads=1, provider="cpu")
    assert classifier.adaptation.steps == []


def test_cli_certifies_an_nhwc_model_on_a_dermamnist_file(tmp_path: Path, capsys) -> None:
    """The whole route a user takes: an NHWC ONNX and a DermaMNIST-format .npz, through smoothcert certify."""
    import json

    from certification.cli import main as cli_main

    rng = np.random.default_rng(3)
    arrays = {f"{s}_images": rng.integers(0, 256, (4, H, W, C), dtype=np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": rng.integers(0, K, (4, 1)).astype(np.uint8) for s in ("train", "val", "test")})
    np.savez(tmp_path / "derma.npz", **arrays)
    out = tmp_path / "certify.jsonl"
    code = cli_main(["certify", "--model", str(nhwc_model(tmp_path / "nhwc.onnx")), "--data", str(tmp_path / "derma.npz"),
                     "--sigma", "0.05", "--n0", "20", "--n", "200", "--threads", "1", "--provider", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == arrays["test_labels"][:, 0].tolist()
    x = arrays["test_images"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    clean = nchw_scores(x).argmax(axis=1)
    # with small noise the smoothed prediction is the clean prediction of the NCHW-reading reference
    assert all(r["prediction"] in (int(c), -1) for r, c in zip(rows, clean))
    assert sum(r["prediction"] == int(c) for r, c in zip(rows, clean)) >= 3
