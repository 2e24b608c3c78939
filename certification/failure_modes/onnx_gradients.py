"""A torch module whose forward pass is an ONNX model run by onnxruntime and whose gradients are SPSA estimates.

The evaluate stage's PGD attack (:mod:`certification.failure_modes.pgd`) needs input gradients of the base
classifier's scores. A model supplied as an ONNX file has no torch weights, so :class:`OnnxSpsaModule` estimates the
vector-Jacobian product the attack asks for by simultaneous perturbation (SPSA; Spall 1992, used as an attack by
Uesato et al. 2018): for the scalar s(x) = <g, f(x)> (g: the incoming gradient of the scores), with ``directions``
Rademacher vectors v and a step ``delta`` per coordinate,

    grad s(x) ~ mean_v [(s(x + delta v) - s(x - delta v)) / (2 delta)] v,

which is unbiased for a linear f and, for a smooth f, as delta -> 0. The noise of the estimate weakens the attack (an
SPSA-driven PGD finds fewer adversarial points than exact gradients would), so its empirical robust accuracy is a
looser upper bound; it remains an upper bound, since every adversarial point it finds is checked by the smoothed
classifier itself. The perturbation directions come from a seeded numpy generator (no global RNG).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from certification.onnx_model import session_logits

METHOD_SUFFIX = "spsa-gradients"  # appended to the attack's method name for a supplied ONNX model
DEFAULT_DIRECTIONS = 16
DEFAULT_STEP_NORM = 0.05  # L2 length of each perturbation delta * v, in [0,1]-pixel units


def spsa_vjp(session: Any, x: np.ndarray, grad_scores: np.ndarray, directions: int, step_norm: float,
             rng: np.random.Generator) -> np.ndarray:
    """SPSA estimate of d<grad_scores[i], f(x[i])>/dx[i] for every row of float32 NCHW ``x``; shape of ``x``."""
    batch, shape = x.shape[0], x.shape[1:]
    dims = int(np.prod(shape))
    delta = step_norm / np.sqrt(dims)
    v = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(directions, batch, dims))
    flat = x.reshape(1, batch, dims).astype(np.float32)
    points = np.concatenate([flat + np.float32(delta) * v, flat - np.float32(delta) * v]).reshape(2 * directions * batch, *shape)
    scores = session_logits(session, points).astype(np.float64).reshape(2, directions, batch, -1)
    s = (scores * grad_scores.astype(np.float64)[None, None]).sum(axis=-1)  # (2, directions, batch)
    slope = (s[0] - s[1]) / (2.0 * delta)
    return (slope[..., None] * v).mean(axis=0).reshape(batch, *shape).astype(np.float32)


class _OnnxScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, module: "OnnxSpsaModule") -> torch.Tensor:  # type: ignore[override]
        ctx.module = module
        ctx.save_for_backward(x)
        return torch.from_numpy(session_logits(module.session, x.detach().numpy()).astype(np.float32))

    @staticmethod
    def backward(ctx: Any, grad_scores: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        m = ctx.module
        grad = spsa_vjp(m.session, x.detach().numpy(), grad_scores.numpy(), m.directions, m.step_norm, m.rng)
        return torch.from_numpy(grad), None


class OnnxSpsaModule(torch.nn.Module):
    """``module(x)``: the ONNX model's scores for float32 NCHW ``x`` in [0, 1]; backward: SPSA estimates."""

    def __init__(self, session: Any, seed: int, directions: int = DEFAULT_DIRECTIONS,
                 step_norm: float = DEFAULT_STEP_NORM) -> None:
        super().__init__()
        self.session, self.directions, self.step_norm = session, int(directions), float(step_norm)
        self.rng = np.random.default_rng(seed)
        self.gradient_method = f"{METHOD_SUFFIX}: {self.directions} directions, supplied ONNX model without weights"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _OnnxScores.apply(x, self)
