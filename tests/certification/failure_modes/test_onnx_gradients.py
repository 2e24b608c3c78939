"""SPSA gradients of an ONNX model against the analytic truth: for linear scores f(x) = flat(x) W + b, the
vector-Jacobian product of g is W g, which the estimate approaches as directions grow (cosine ~ sqrt(q / (q + d)))."""
from __future__ import annotations

import numpy as np
import torch

from certification.failure_modes.onnx_gradients import OnnxSpsaModule, spsa_vjp
from certification.onnx_model import open_session
from support.user_model import nhwc_user_model

SIZE, K = 8, 3


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_spsa_estimate_converges_to_the_linear_models_gradient(tmp_path) -> None:
    path = nhwc_user_model(tmp_path / "linear.onnx", SIZE, K, seed=3, batch="N")
    session = open_session(path, 1, "cpu")  # NHWC adapted: takes NCHW, scores = flat_NCHW(x) W + b
    x = np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)
    g = np.array([[1.0, -0.5, 0.2], [0.0, 1.0, -1.0]], dtype=np.float32)
    e = np.eye(3 * SIZE * SIZE, dtype=np.float32).reshape(-1, 3, SIZE, SIZE)
    basis = session.run(None, {session.get_inputs()[0].name: e})[0] - session.run(None, {session.get_inputs()[0].name: np.zeros_like(e[:1])})[0]
    truth = (g @ basis.T).reshape(2, 3, SIZE, SIZE)  # exact W g per row
    few = spsa_vjp(session, x, g, 16, 0.05, np.random.default_rng(1))
    many = spsa_vjp(session, x, g, 4000, 0.05, np.random.default_rng(1))
    for row in range(2):
        assert _cosine(many[row], truth[row]) > 0.95
        assert _cosine(many[row], truth[row]) > _cosine(few[row], truth[row])
    # through torch autograd, as the PGD attack calls it; seeded, so the same module seed gives the same estimate
    module = OnnxSpsaModule(session, seed=5, directions=4000)
    xt = torch.from_numpy(x).requires_grad_(True)
    (grad,) = torch.autograd.grad((module(xt) * torch.from_numpy(g)).sum(), xt)
    assert _cosine(grad.numpy()[0], truth[0]) > 0.95
    again = OnnxSpsaModule(session, seed=5, directions=4000)
    (grad2,) = torch.autograd.grad((again(xt) * torch.from_numpy(g)).sum(), xt)
    assert torch.equal(grad, grad2)
