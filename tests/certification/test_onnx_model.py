"""The onnxruntime-backed base classifier: pinned, recorded session options; shape checks; labels."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from certification.errors import InputError
from certification.onnx_model import OnnxClassifier, provider_list
from support.oracle import conv_onnx, linear_onnx


def test_session_options_are_pinned_and_recorded(tmp_path) -> None:
    model = OnnxClassifier(conv_onnx(tmp_path / "m.onnx", (3, 8, 8)), threads=2, provider="cpu")
    config = model.session_config
    assert config["provider"] == "CPUExecutionProvider" and config["intra_op_num_threads"] == 2
    assert config["execution_mode"] == "sequential" and config["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert config["onnxruntime_version"] == onnxruntime.__version__
    assert model.num_classes == 4 and model.input_chw == (3, 8, 8) and len(model.sha256) == 64


def test_labels_are_the_argmax_of_the_scores(tmp_path) -> None:
    w = np.linspace(-1, 1, 16).reshape(1, 4, 4)
    model = OnnxClassifier(linear_onnx(tmp_path / "lin.onnx", w, 0.1, (1, 4, 4)), threads=1)
    x = np.random.default_rng(0).random((50, 1, 4, 4), dtype=np.float32)
    expected = ((x.reshape(50, -1).astype(np.float64) @ w.reshape(-1) + 0.1) > 0).astype(np.int64)
    np.testing.assert_array_equal(model.predict_labels(x), expected)
    assert model.logits(x).shape == (50, 2)


def test_shape_mismatch_names_both_shapes(tmp_path) -> None:
    model = OnnxClassifier(conv_onnx(tmp_path / "m.onnx", (3, 8, 8)), threads=1)
    with pytest.raises(InputError, match=r"\(3, 16, 16\).*\(3, 8, 8\)"):
        model.check_input_shape((3, 16, 16), "data.npz")


def test_cuda_is_refused_clearly_when_absent(tmp_path) -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(InputError, match="CUDAExecutionProvider"):
        OnnxClassifier(conv_onnx(tmp_path / "m.onnx", (3, 8, 8)), provider="cuda")
    assert OnnxClassifier(tmp_path / "m.onnx", threads=1).session_config["provider"] == "CPUExecutionProvider"


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cuda_asked_for_but_not_started_is_an_error(tmp_path, monkeypatch) -> None:
    """onnxruntime-gpu lists CUDA, then runs on the CPU when CUDA cannot start (no GPU, missing libraries): an
    explicit provider 'cuda' must then fail, 'auto' may go on with the CPU and records it. The CPU-only
    onnxruntime here falls back in that same way when told that CUDA is available."""
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    listed = ["CUDAExecutionProvider", *onnxruntime.get_available_providers()]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    path = conv_onnx(tmp_path / "m.onnx", (3, 8, 8))
    with pytest.raises(InputError, match="could not start CUDAExecutionProvider.*provider 'cpu'"):
        OnnxClassifier(path, provider="cuda")
    assert OnnxClassifier(path, threads=1, provider="auto").session_config["provider"] == "CPUExecutionProvider"


def test_cuda_sessions_use_the_heuristic_cudnn_search() -> None:
    """CERTIFY alternates batch shapes; cuDNN's exhaustive search reruns at each change (10x slower measured)."""
    cuda, cpu = provider_list("CUDAExecutionProvider")
    assert cuda == ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}) and cpu == "CPUExecutionProvider"
    assert provider_list("CPUExecutionProvider") == ["CPUExecutionProvider"]


def _graph_model(path, nodes, outputs, initializers=()):
    """A tiny ONNX model on float32 [N, 1, 2, 2] inputs with the given nodes and outputs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 1, 2, 2])],
                              outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _flat_scores(nodes_after, out_type):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["scores"]),
             *nodes_after]
    return nodes, [weight], out_type


def test_non_finite_scores_stop_certification_with_one_line(tmp_path) -> None:
    """A model whose scores are NaN would otherwise be certified as class 0 (argmax of NaN)."""
    from onnx import TensorProto, helper, numpy_helper

    from certification.smoothing import SmoothedClassifier

    nan = numpy_helper.from_array(np.array([np.nan], np.float32), "NAN")
    nodes, inits, _ = _flat_scores([helper.make_node("Mul", ["scores", "NAN"], ["logits"])], None)
    path = _graph_model(tmp_path / "nan.onnx", nodes, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])],
                        [*inits, nan])
    with pytest.raises(InputError, match="non-finite class scores") as caught:
        SmoothedClassifier.from_onnx(path, 0.25, threads=1).certify(np.full((1, 2, 2), 0.5, np.float32), 10, 50, 0.01, 0)
    assert "\n" not in str(caught.value)


def test_integer_labels_and_two_outputs_are_refused(tmp_path) -> None:
    from onnx import TensorProto, helper

    nodes, inits, _ = _flat_scores([helper.make_node("Cast", ["scores"], ["logits"], to=TensorProto.INT64)], None)
    ints = _graph_model(tmp_path / "int.onnx", nodes, [helper.make_tensor_value_info("logits", TensorProto.INT64, [None, 3])], inits)
    with pytest.raises(InputError, match="is int64; expected float class scores"):
        OnnxClassifier(ints, threads=1)
    nodes, inits, _ = _flat_scores([helper.make_node("Identity", ["scores"], ["logits"]),
                                    helper.make_node("Identity", ["scores"], ["extra"])], None)
    two = _graph_model(tmp_path / "two.onnx", nodes, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3]),
                                                      helper.make_tensor_value_info("extra", TensorProto.FLOAT, [None, 3])], inits)
    with pytest.raises(InputError, match="one input and one output, found 1 inputs and 2 outputs"):
        OnnxClassifier(two, threads=1)
