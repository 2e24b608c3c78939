"""Stage ``evaluate``: failure modes of the certified model -> metrics/evaluate.json, results/evaluate/.

Reads params ``evaluate`` (below), ``deploy`` (n, alpha, latency_repeats: the device's PREDICT) and ``gate`` (radius, min_certified_accuracy_lower, max_abstention_rate); sigma,
alpha, confidence and radii are those certification used, read from metrics/certify.json. Inputs: models/model.onnx (the shipped,
certified artifact), models/model_fp32.onnx (int8 drift only), models/model.pt (weights for the attack's
gradients; for a supplied model, models/model.json ``supplied``, SPSA estimates from the ONNX file instead), models/model.json, data/test.npz, results/certify.jsonl, metrics/certify.json (must name the same
model). Exit 1 with one line on stderr when the attack confirms a contradiction of a certificate (outputs are
still written, as evidence); exit 2 on bad input.

``evaluate`` keys (required): max_examples, predict_n, attack_examples, attack_steps, attack_samples,
attack_radii, seed; (optional, defaults in EvaluationSettings): confirm_n, least_robust,
quantization_examples, quantization_n, quantization_noise_samples.
"""
from __future__ import annotations

import sys
from typing import Any

import torch

from certification.errors import InputError, MissingInputError, StaleArtifactError
from certification.failure_modes.report import (EvaluationInputs, EvaluationSettings, attack_curve_csv,
                                                evaluate_failure_modes, summary_lines)
from certification.fileio import read_json, sha256_file, write_json_atomic, write_text_atomic
from certification.summary import read_certify_metrics
from pipeline import layout
from pipeline.stage import PARAMS_FILE, load_document, run_stage
from pipeline.tracking import log_stage

MODEL, MODEL_FP32, CHECKPOINT, MODEL_CARD = layout.MODEL, layout.MODEL_FP32, layout.CHECKPOINT, layout.MODEL_CARD
TEST_DATA, CERTIFICATES, CERTIFY_METRICS = layout.TEST_SPLIT, layout.CERTIFY_RESULTS, layout.CERTIFY_METRICS
OUT_DIR, METRICS, CURVE_CSV = layout.EVALUATE_DIR, layout.EVALUATE_METRICS, layout.EVALUATE_ATTACK_CURVE

REQUIRED = {"max_examples": int, "predict_n": int, "attack_examples": int, "attack_steps": int,
            "attack_samples": int, "attack_radii": list, "seed": int}
OPTIONAL = {"confirm_n": int, "least_robust": int, "quantization_examples": int, "quantization_n": int,
            "quantization_noise_samples": int}


def _section(document: dict[str, Any], name: str) -> dict[str, Any]:
    section = document.get(name)
    if not isinstance(section, dict):
        raise InputError(f"{PARAMS_FILE}: missing section '{name}:'")
    return section


def _number(section: dict[str, Any], where: str, key: str, kind: type = float) -> Any:
    if key not in section:
        raise InputError(f"{PARAMS_FILE}: missing key '{where}.{key}'")
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise InputError(f"{PARAMS_FILE}: '{where}.{key}' must be {kind.__name__}, got {value!r}")
    return kind(value)


def evaluate_params(document: dict[str, Any]) -> dict[str, Any]:
    """The ``evaluate`` section: required and optional keys, strict (unknown keys are errors)."""
    section = _section(document, "evaluate")
    unknown = sorted(set(section) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise InputError(f"{PARAMS_FILE}: unknown key 'evaluate.{unknown[0]}'; allowed keys: {', '.join(sorted({**REQUIRED, **OPTIONAL}))}")
    values: dict[str, Any] = {}
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        if key not in section:
            if key in REQUIRED:
                raise InputError(f"{PARAMS_FILE}: missing key 'evaluate.{key}'")
            continue
        if kind is list:
            radii = section[key]
            if not isinstance(radii, list) or not radii or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in radii):
                raise InputError(f"{PARAMS_FILE}: 'evaluate.{key}' must be a non-empty list of numbers, got {radii!r}")
            values[key] = tuple(float(r) for r in radii)
        else:
            values[key] = _number(section, "evaluate", key, int)
            if values[key] < 0:
                raise InputError(f"{PARAMS_FILE}: 'evaluate.{key}' must be >= 0, got {values[key]}")
    return values


DEPLOY_KEYS = {"n": int, "alpha": float, "latency_repeats": int}


def deploy_params(document: dict[str, Any]) -> dict[str, Any]:
    """The ``deploy`` section (the device's PREDICT: n, alpha; latency_repeats), strict."""
    section = _section(document, "deploy")
    unknown = sorted(set(section) - set(DEPLOY_KEYS))
    if unknown:
        raise InputError(f"{PARAMS_FILE}: unknown key 'deploy.{unknown[0]}'; allowed keys: {', '.join(sorted(DEPLOY_KEYS))}")
    values = {key: _number(section, "deploy", key, kind) for key, kind in DEPLOY_KEYS.items()}
    if values["n"] < 1 or values["latency_repeats"] < 1:
        raise InputError(f"{PARAMS_FILE}: 'deploy.n' and 'deploy.latency_repeats' must be >= 1")
    if not 0.0 < values["alpha"] < 0.5:
        raise InputError(f"{PARAMS_FILE}: 'deploy.alpha' must lie in (0, 0.5), got {values['alpha']}")
    return {"deploy_n": values["n"], "deploy_alpha": values["alpha"], "latency_repeats": values["latency_repeats"]}


def settings_from_params(document: dict[str, Any], certify: dict[str, Any]) -> EvaluationSettings:
    """Settings from params ``evaluate`` and ``gate`` and, for what certification fixed (sigma, alpha,
    confidence, radii), from the certify stage's own summary ``certify`` (metrics/certify.json)."""
    gate = _section(document, "gate")
    values = evaluate_params(document)
    return EvaluationSettings(
        sigma=float(certify["params"]["sigma"]),
        alpha=float(certify["params"]["alpha"]),
        confidence=float(certify["confidence"]),
        radii=tuple(float(r) for r in certify["radii"]),
        gate_radius=_number(gate, "gate", "radius"),
        gate_threshold=_number(gate, "gate", "min_certified_accuracy_lower"),
        max_abstention_rate=_number(gate, "gate", "max_abstention_rate"),
        lighting=(certify.get("noise") or {}).get("covariance"),
        **values, **deploy_params(document),
    )


def main() -> int:
    certify_metrics = read_certify_metrics(CERTIFY_METRICS)
    settings = settings_from_params(load_document(), certify_metrics)
    card = read_json(MODEL_CARD)
    if not MODEL.is_file():
        raise MissingInputError(f"{MODEL}: model not found; run the export stage first")
    if certify_metrics["model"]["sha256"] != sha256_file(MODEL):
        raise StaleArtifactError(f"{CERTIFY_METRICS} names a different model than {MODEL}; re-run the certify stage")
    quantization = str(card.get("quantization", "none"))
    if card.get("supplied"):  # a supplied ONNX file has no torch weights: SPSA gradient estimates drive the attack
        from certification.failure_modes.onnx_gradients import OnnxSpsaModule
        from certification.onnx_model import open_session

        attack_model: torch.nn.Module = OnnxSpsaModule(open_session(MODEL, settings.threads, "cpu"), settings.seed)
    else:
        from certification.edge_cnn import load_checkpoint

        attack_model, _ = load_checkpoint(CHECKPOINT)
    torch.manual_seed(settings.seed)  # no global randomness is used; this only pins any library default
    inputs = EvaluationInputs(
        model=MODEL, data=TEST_DATA, certificates=CERTIFICATES, out_dir=OUT_DIR,
        fp32_model=MODEL_FP32, quantization=quantization, class_names=tuple(card.get("class_names") or ()),
        malignant_classes=_malignant(card),
    )
    document = evaluate_failure_modes(inputs, settings, attack_model)
    write_json_atomic(METRICS, document)
    write_text_atomic(CURVE_CSV, attack_curve_csv(document))
    _log_to_tracking(document)
    for line in summary_lines(document):
        print(f"evaluate: {line}")
    print(f"evaluate: {sum(document['seconds'].values()):.1f} s")
    confirmed = document["attack"]["confirmed_contradictions"]
    if confirmed:
        first = document["attack"]["contradictions"][0]
        print(
            f"evaluate: FAILED: {confirmed} confirmed contradiction(s) of certificates (e.g. example {first['index']}: "
            f"class changed at L2 distance {first['distance']:.4g} < certified radius {first['radius']:.4g}); see {METRICS}",
            file=sys.stderr,
        )
        return 1
    return 0


def _malignant(card: dict[str, Any]) -> tuple[str, ...]:
    """The triage's positive class: models/model.json ``malignant_classes`` (as the gate reads it)."""
    malignant = card.get("malignant_classes")
    if not isinstance(malignant, list) or not malignant or not all(isinstance(c, str) for c in malignant):
        raise InputError(f"{MODEL_CARD}: 'malignant_classes' must be a non-empty list of class names; re-run the export stage")
    return tuple(malignant)


def _log_to_tracking(document: dict[str, Any]) -> None:
    """Log params, headline metrics and the outputs to MLflow through pipeline.tracking."""
    attack = document["attack"]
    metrics: dict[str, Any] = {
        "attack_candidates": attack["candidates"],
        "attack_confirmed_contradictions": attack["confirmed_contradictions"],
        "subgroups_flagged": len(document["subgroups"]["flagged"]),
        "abstention_groups_over_limit": len(document["abstentions"]["exceeds_limit"]),
        "corruptions_not_covered": sum(c["coverage"] == "not covered" for c in document["corruptions"]),
        **{f"empirical_robust_accuracy_r{p['radius']:g}": p["accuracy"] for p in attack["empirical_robust_accuracy"]},
        **{f"corruption_{c['name']}_{c['severity']}_accuracy_smoothed": c["accuracy_smoothed"] for c in document["corruptions"]},
    }
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        rate = document["triage"]["deployed"]["rates"][name]
        if rate["estimate"] is not None:
            metrics[f"triage_deployed_{name}"] = rate["estimate"]
    metrics["deployed_abstention_rate"] = document["deployed"]["abstention_rate"]["estimate"]
    metrics["deployed_latency_median_s"] = document["deployed"]["latency"]["median_s"]
    if document["quantization"] is not None:
        metrics["quantization_agreement_under_noise"] = document["quantization"]["agreement_under_noise"]
    log_stage(
        "evaluate",
        params={k: v for k, v in document["settings"].items() if k != "threads"},
        metrics=metrics,
        artifacts=[METRICS, CURVE_CSV, *document["plots"].values()],
        tags={"smoothcert.model_sha256": document["model"]["sha256"]},
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
