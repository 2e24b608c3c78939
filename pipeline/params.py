"""Params sections read by more than one stage, validated in one place (the stages never import each other)."""
from __future__ import annotations

from typing import Any, Mapping

from certification.certify_run import RunOptions
from certification.errors import ParameterError
from pipeline import layout
from pipeline.stage import load_section

KEYS: dict[str, Any] = {
    "sigma": (float, type(None)),
    "n0": int,
    "n": int,
    "alpha": float,
    "batch_size": int,
    "max_examples": int,
    "seed": int,
    "confidence": float,
    "radii": list,
}


def resolve_sigma(params: Mapping[str, Any], card: Mapping[str, Any]) -> float:
    """certify.sigma, or the model's training sigma (models/model.json ``train_sigma``) when it is null."""
    if params["sigma"] is not None:
        return float(params["sigma"])
    sigma = card.get("train_sigma")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ParameterError(f"certify.sigma is null and {layout.MODEL_CARD} records train_sigma {sigma!r}; "
                             "set certify.sigma to a positive number")
    return float(sigma)


def certify_params(card: Mapping[str, Any]) -> dict[str, Any]:
    """The ``certify`` section with sigma resolved against the model card, every number checked before any work."""
    params = load_section("certify", KEYS)
    params["sigma"] = resolve_sigma(params, card)
    run_options(params).check(params["n0"], params["n"])
    return params


def run_options(params: Mapping[str, Any]) -> RunOptions:
    """The run options of a resolved ``certify`` section (threads and provider: the library's defaults)."""
    return RunOptions(sigma=params["sigma"], alpha=params["alpha"], seed=params["seed"], batch_size=params["batch_size"],
                      max_examples=params["max_examples"])
