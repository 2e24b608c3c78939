"""A user's own ONNX classifier as another tool would export it: NHWC input [N, H, W, 3] with a fixed batch of 1
(TensorFlow-style), a linear layer over the image, units declared in its metadata (input_range = [0,1])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def nhwc_user_model(path: Path, size: int, classes: int, seed: int = 0, batch: int | str = 1) -> Path:
    """Scores = flatten_NCHW(x) @ W + b for an NHWC input; W seeded, so the same call gives the same bytes."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(scale=0.05, size=(3 * size * size, classes)).astype(np.float32)
    bias = rng.normal(scale=0.1, size=(classes,)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["image"], ["chw"], perm=[0, 3, 1, 2]),
             helper.make_node("Flatten", ["chw"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "w", "b"], ["scores"])]
    graph = helper.make_graph(nodes, "user_model", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, size, size, 3])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes])],
                              initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = "input_range", "[0,1]"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
