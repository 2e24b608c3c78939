"""Stage ``validate``: CERTIFY the shipped model on a seeded subset of the VALIDATION split, for sigma selection.

Reads params ``validate`` (n0, n, alpha, seed, max_examples, confidence), the certification sigma (``certify.sigma``,
null = the training sigma in models/model.json), ``gate.radius`` (r*), models/model.onnx, models/model.json and
data/val.npz; never the test split. Writes metrics/validation.json (:mod:`certification.sigma_selection`), the DVC
metrics file that ``dvc exp show`` lists for each candidate and ``python -m pipeline.select_sigma`` ranks.
"""
from __future__ import annotations

from typing import Any

from certification.errors import ParameterError
from certification.model_card import load_model_description
from certification.sigma_selection import write_validation_metrics
from certification.validation_run import ValidationSettings, validate_model
from pipeline import layout
from pipeline.params import certify_params
from pipeline.stage import load_document, load_section, run_stage
from pipeline.tracking import log_stage

KEYS = {"n0": int, "n": int, "alpha": float, "seed": int, "max_examples": int, "confidence": float}


def gate_radius() -> float:
    """``gate.radius``: r*, the radius the selection rule and the gate judge (positive, [0,1]-pixel L2 units)."""
    gate = load_document().get("gate")
    radius = gate.get("radius") if isinstance(gate, dict) else None
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius > 0:
        raise ParameterError(f"gate.radius must be a positive number (r* in [0,1]-pixel units), got {radius!r}")
    return float(radius)


def main() -> int:
    params: dict[str, Any] = load_section("validate", KEYS)
    card = load_model_description(layout.MODEL_CARD)
    certify = certify_params(card)
    radius = gate_radius()
    metrics = validate_model(layout.MODEL, layout.VAL_SPLIT, certify["sigma"], radius, ValidationSettings(**params),
                             card["class_names"], batch_size=certify["batch_size"], threads=certify["threads"],
                             noise_threads=certify["noise_threads"])
    write_validation_metrics(layout.VALIDATION_METRICS, metrics)
    log_stage("validate", {**params, "sigma": metrics.sigma, "radius": radius},
              {key: getattr(metrics, key) for key in ("certified_accuracy", "certified_accuracy_lower", "clean_accuracy",
                                                       "clean_accuracy_lower", "average_certified_radius")},
              artifacts=[layout.VALIDATION_METRICS])
    print(f"validate: sigma {metrics.sigma:g}, {metrics.n_examples} validation examples: certified accuracy at r* = "
          f"{radius:g} {metrics.certified_accuracy:.3f} (lower {metrics.certified_accuracy_lower:.3f}), clean accuracy "
          f"{metrics.clean_accuracy:.3f} (lower {metrics.clean_accuracy_lower:.3f}), "
          f"ACR {metrics.average_certified_radius:.3f}; wrote {layout.VALIDATION_METRICS}")
    return 0


if __name__ == "__main__":
    run_stage("validate", main)
