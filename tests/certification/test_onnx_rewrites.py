"""Graph simplifications of the exported model keep its function and apply only where their pattern matches."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from certification.onnx_rewrites import fold_input_scale_into_conv, global_average_pool, simplify

RNG = np.random.default_rng(0)
MEAN = np.array([0.6, 0.45, 0.4], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2, 0.25, 0.3], dtype=np.float32).reshape(1, 3, 1, 1)


def _model(extra_div_consumer: bool = False, group: int = 1, keepdims: int = 1) -> onnx.ModelProto:
    """input -> Sub(mean) -> Div(std) -> Conv3x3/2 pad 1 -> Relu -> ReduceMean(2, 3) -> Flatten -> logits."""
    cout = 6 if group == 1 else 3
    weight = RNG.standard_normal((cout, 3 // group, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2], group=group),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("ReduceMean", ["relu", "axes"], ["pooled"], keepdims=keepdims),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cout])]
    if extra_div_consumer:
        nodes.append(helper.make_node("Identity", ["scaled"], ["scaled_copy"]))
        outputs.append(helper.make_tensor_value_info("scaled_copy", TensorProto.FLOAT, ["batch", 3, 8, 8]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])], outputs,
        [numpy_helper.from_array(MEAN, "mean"), numpy_helper.from_array(STD, "std"), numpy_helper.from_array(weight, "w"),
         numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def _ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def test_simplify_removes_div_and_reduce_mean_and_keeps_the_function() -> None:
    model = _model()
    x = RNG.random((5, 3, 8, 8), dtype=np.float32)
    before = _run(model, x)[0]
    simplified = simplify(onnx.ModelProto.FromString(model.SerializeToString()))
    onnx.checker.check_model(simplified)
    assert _ops(simplified) == ["Sub", "Conv", "Relu", "GlobalAveragePool", "Flatten"]
    assert {init.name for init in simplified.graph.initializer} == {"mean", "w"}  # std and axes are gone
    np.testing.assert_allclose(_run(simplified, x)[0], before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,kept", [
    ({"extra_div_consumer": True}, "Div"),   # the scaled tensor is needed elsewhere
    ({"group": 3}, "Div"),                   # depthwise conv: per-channel folding would need another form
    ({"keepdims": 0}, "ReduceMean"),         # GlobalAveragePool keeps the spatial axes
])
def test_rewrites_leave_other_patterns_alone(kwargs, kept) -> None:
    model = _model(**kwargs)
    x = RNG.random((2, 3, 8, 8), dtype=np.float32)
    before = _run(model, x)
    simplified = simplify(onnx.ModelProto.FromString(model.SerializeToString()))
    assert kept in _ops(simplified)
    for a, b in zip(_run(simplified, x), before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_rewrite_counts() -> None:
    model = _model()
    assert fold_input_scale_into_conv(model) == 1 and fold_input_scale_into_conv(model) == 0
    assert global_average_pool(model) == 1 and global_average_pool(model) == 0
