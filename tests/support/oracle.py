"""The analytic oracle for the smoothing tests: a two-class linear model built directly as ONNX.

logits(x) = [0, w.x + b], so f(x) = 1 iff w.x + b > 0. Under Gaussian noise N(0, sigma^2 I),
P(f(x + e) = 1) = Phi((w.x + b) / (sigma ||w||)), and the smoothed classifier's exact L2 robust radius at x is
|w.x + b| / ||w|| (the distance to the decision hyperplane).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_onnx(path: Path, w: np.ndarray, b: float, chw: tuple[int, int, int]) -> Path:
    """Write the linear oracle model with input "input" [batch, C, H, W] and output "logits" [batch, 2]."""
    d = int(np.prod(chw))
    weight = np.zeros((d, 2), dtype=np.float32)
    weight[:, 1] = np.asarray(w, dtype=np.float32).reshape(d)
    bias = np.array([0.0, b], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        ],
        "linear_oracle",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *chw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def points_at_margins(w: np.ndarray, b: float, centre: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Images x_j = centre + t_j w/||w|| with w.x_j + b = margins_j * ||w|| (signed distance margins_j)."""
    w = np.asarray(w, dtype=np.float64).reshape(centre.shape)
    norm = float(np.linalg.norm(w))
    offset = (float((w * centre).sum()) + b) / norm
    steps = np.asarray(margins, dtype=np.float64) - offset
    points = centre[None] + steps.reshape(-1, *([1] * centre.ndim)) * (w / norm)[None]
    return points.astype(np.float32)


def exact_margin(w: np.ndarray, b: float, x: np.ndarray) -> float:
    """Signed distance (w.x + b)/||w||, in float64."""
    w64 = np.asarray(w, dtype=np.float64).reshape(-1)
    return float((w64 @ np.asarray(x, dtype=np.float64).reshape(-1) + b) / np.linalg.norm(w64))


def conv_onnx(path: Path, chw: tuple[int, int, int], num_classes: int = 4, seed: int = 0, output_rank: int = 2) -> Path:
    """A small random CNN as ONNX (Conv3x3 -> Relu -> Flatten -> Gemm), input "input"
    [batch, C, H, W], output "logits" [batch, K]; ``output_rank`` 1 or 3 builds a model whose output is not (N, K)."""
    rng = np.random.default_rng(seed)
    c = chw[0]
    hidden = 8
    conv_w = rng.normal(0, 1.0, size=(hidden, c, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.5, size=hidden).astype(np.float32)
    fan_in = hidden * chw[1] * chw[2]
    fc_w = (rng.normal(0, 1.0, size=(fan_in, num_classes)) / np.sqrt(fan_in)).astype(np.float32)
    fc_b = np.zeros(num_classes, dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "CW", "CB"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "FW", "FB"], ["scores"] if output_rank != 2 else ["logits"]),
    ]
    initializers = [numpy_helper.from_array(a, n) for a, n in ((conv_w, "CW"), (conv_b, "CB"), (fc_w, "FW"), (fc_b, "FB"))]
    out_shape: list[object] = ["batch", num_classes]
    if output_rank == 1:
        nodes.append(helper.make_node("ReduceMax", ["scores"], ["logits"], keepdims=0, axes=[1]))
        out_shape = ["batch"]
    elif output_rank == 3:
        initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "AX"))
        nodes.append(helper.make_node("Unsqueeze", ["scores", "AX"], ["logits"]))
        out_shape = ["batch", 1, num_classes]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *chw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_split(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A data split in the pipeline's .npz format (uint8 N,H,W,C or float32 N,C,H,W)."""
    np.savez(path, images=images, labels=np.asarray(labels, dtype=np.int64))
    return path


def oracle_classifier(folder: Path, seed: int, b: float, sigma: float, batch_size: int,
                      chw: tuple[int, int, int] = (1, 4, 4)) -> tuple["SmoothedClassifier", np.ndarray, float]:
    """A smoothed linear oracle: random weights w (|w_i| in [0.8, 1.2]) and offset ``b``, written to ``folder``."""
    from certification.smoothing import SmoothedClassifier

    rng = np.random.default_rng(seed)
    w = rng.choice([-1.0, 1.0], size=chw) * rng.uniform(0.8, 1.2, size=chw)
    path = linear_onnx(folder / "linear.onnx", w, b, chw)
    return SmoothedClassifier.from_onnx(path, sigma, batch_size=batch_size, threads=1), w, b
