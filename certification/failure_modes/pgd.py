"""PGD in L2 against a smoothed classifier (Salman et al. 2019, "SmoothAdv"), for float32 NCHW in [0, 1].

The attack maximises the cross-entropy of the *smoothed soft classifier*: the average softmax of the base
model over ``samples`` Gaussian copies (standard deviation ``sigma``, fresh noise at every step), i.e. it
minimises log E[softmax(f(x' + noise))]_target. Each step moves along the L2-normalised gradient by
2.5 * eps / steps and is projected onto the L2 ball of radius ``eps`` around x and onto [0, 1]^d (clipping
towards x never increases the distance, so x' stays in both sets).
"""
from __future__ import annotations

import torch


def smoothed_pgd_l2(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    steps: int,
    samples: int,
    sigma: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Adversarial points x' with ||x' - x||_2 <= eps and x' in [0, 1], pushing the smoothed class away from ``target``."""
    if eps <= 0 or steps < 1:
        return x.clone()
    batch = x.shape[0]
    delta = torch.zeros_like(x)
    step_size = 2.5 * eps / steps
    rows = torch.arange(batch)
    for _ in range(steps):
        delta.requires_grad_(True)
        noisy = (x + delta).repeat_interleave(samples, dim=0)
        noisy = noisy + sigma * torch.randn(noisy.shape, generator=generator, dtype=noisy.dtype)
        probabilities = torch.softmax(model(noisy), dim=1).view(batch, samples, -1).mean(dim=1)
        loss = -torch.log(probabilities[rows, target].clamp_min(1e-12)).sum()
        (gradient,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
            delta = delta + step_size * gradient / norms
            lengths = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
            delta = delta * torch.clamp(eps / lengths.clamp_min(1e-12), max=1.0)
            delta = torch.clamp(x + delta, 0.0, 1.0) - x
    return (x + delta).detach()
