"""Run every failure-mode analysis on one certified model and collect the ``metrics/evaluate.json`` document.

Top-level JSON keys (each analysis module documents its own part):

    schema_version (int, 1), model {path, sha256, quantization}, data {path, sha256}, certificates {path,
    sha256, n_rows}, settings {...every setting used...}, subgroups, abstentions, least_robust,
    corruptions, corruptions_clean, attack, quantization (null when no int8 artifact), triage {clean, certified,
    deployed} (:mod:`certification.failure_modes.triage`), deployed (:mod:`certification.failure_modes.deployed`),
    plots {name: path},
    seconds {analysis: wall-clock seconds}; seconds, deployed.latency and deployed.platform are the only entries
    that differ between identical runs (timings, and the machine that ran the stage).
    deployed also holds gate_limit (gate.max_abstention_rate) and upper_within_gate_limit (the deployed PREDICT's
    upper abstention bound <= that limit: the gate judges CERTIFY's abstentions, this is the device's).
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from certification.dataset_io import load_split
from certification.errors import InputError, StaleArtifactError
from certification.failure_modes import plots
from certification.failure_modes.abstentions import abstention_report, save_least_robust
from certification.failure_modes.attacks import attack_smoothed
from certification.certificate_arrays import CertificateArrays, as_arrays, check_against_split
from certification.records import read_certify_records
from certification.failure_modes.corruptions import evaluate_corruptions
from certification.failure_modes.deployed import DeployedMeasurement, measure_deployed_predict
from certification.failure_modes.grouping import all_groups, fitzpatrick_groups
from certification.onnx_model import open_session
from certification.failure_modes.quantization_drift import quantization_drift
from certification.failure_modes.seeds import phase_seed
from certification.failure_modes.subgroups import subgroup_report
from certification.failure_modes.triage import answers_at_radius, triage_report
from certification.fileio import sha256_file
from certification.lighting import covariance_from_record
from certification.smoothing import SmoothedClassifier

SCHEMA_VERSION = 1
_SUBSET_TAG = {"corruptions": 11, "attack": 12, "quantization": 13}


@dataclass(frozen=True)
class EvaluationInputs:
    model: Path  # the shipped ONNX artifact (certified)
    data: Path  # test split .npz
    certificates: Path  # results/certify.jsonl
    out_dir: Path  # images and plots
    fp32_model: Path | None = None  # float export; used only when quantization == "int8"
    quantization: str = "none"
    class_names: tuple[str, ...] = ()
    malignant_classes: tuple[str, ...] = ()  # models/model.json malignant_classes (the triage's positive class)


@dataclass(frozen=True)
class EvaluationSettings:
    sigma: float
    alpha: float
    confidence: float
    radii: tuple[float, ...]
    gate_radius: float
    gate_threshold: float  # minimum lower bound on certified accuracy at gate_radius
    max_abstention_rate: float
    seed: int
    max_examples: int = 100  # examples for the variations (0 = every certified example)
    predict_n: int = 200
    attack_examples: int = 40
    attack_steps: int = 10
    attack_samples: int = 16
    attack_radii: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    confirm_n: int = 2000
    least_robust: int = 8
    quantization_examples: int = 20
    quantization_n: int = 1000
    quantization_noise_samples: int = 100
    deploy_n: int = 1000  # PREDICT samples per image on the device (params deploy.n)
    deploy_alpha: float = 0.001  # PREDICT's test level on the device (params deploy.alpha)
    latency_repeats: int = 20  # single-image PREDICT calls timed (params deploy.latency_repeats)
    batch_size: int = 1000
    threads: int | None = None
    #: metrics/certify.json ``noise.covariance`` of a lighting run (:mod:`certification.lighting`); None: isotropic
    lighting: dict[str, Any] | None = None


def _mahalanobis_radii(records: Sequence[Any], covariance: Any, where: str) -> np.ndarray | None:
    """The rows' Mahalanobis radii (file order) for a lighting run; None for an isotropic one. Rows and metrics must
    agree on whether the run was a lighting run."""
    carried = [r.mahalanobis_radius is not None for r in records]
    if covariance is None:
        if any(carried):
            raise StaleArtifactError(f"{where}: rows carry mahalanobis_radius but metrics/certify.json records no lighting "
                                     "covariance; re-run certify")
        return None
    if not all(carried):
        raise StaleArtifactError(f"{where}: metrics/certify.json records a lighting covariance but the rows carry no "
                                 "mahalanobis_radius; re-run certify")
    return np.array([r.mahalanobis_radius for r in records], dtype=np.float64)


def choose_rows(rows: CertificateArrays, count: int, seed: int, tag: str) -> np.ndarray:
    """Row positions of a seeded subset of ``count`` rows (all rows when count is 0 or >= len), sorted."""
    if count <= 0 or count >= len(rows):
        return np.arange(len(rows))
    rng = np.random.default_rng([int(seed), _SUBSET_TAG[tag]])
    return np.sort(rng.choice(len(rows), size=count, replace=False))


def _check_settings(s: EvaluationSettings, rows: CertificateArrays) -> None:
    if not np.isclose(rows.sigma, s.sigma, rtol=1e-9, atol=0.0):
        raise InputError(f"certificates were made with sigma {rows.sigma} but the settings say {s.sigma}; re-run certify or fix certify.sigma")
    if not np.isclose(rows.alpha, s.alpha, rtol=1e-9, atol=0.0):
        raise InputError(f"certificates were made with alpha {rows.alpha} but the settings say {s.alpha}; re-run certify or fix certify.alpha")
    for name in ("predict_n", "deploy_n", "latency_repeats", "attack_steps", "attack_samples", "confirm_n", "quantization_n", "quantization_noise_samples"):
        if getattr(s, name) < 1:
            raise InputError(f"evaluate.{name} must be at least 1, got {getattr(s, name)}")
    if any(r <= 0 for r in s.attack_radii):
        raise InputError(f"evaluate.attack_radii must be positive, got {list(s.attack_radii)}")


def evaluate_failure_modes(inputs: EvaluationInputs, settings: EvaluationSettings, attack_model: torch.nn.Module) -> dict[str, Any]:
    """Every analysis; returns the JSON document. ``attack_model``: torch module with the artifact's weights, or one
    that estimates its gradients (:class:`certification.failure_modes.onnx_gradients.OnnxSpsaModule`, whose
    ``gradient_method`` the attack's method then names)."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    split = load_split(inputs.data)
    records = read_certify_records(inputs.certificates)
    model_sha = sha256_file(inputs.model)
    stale = next((r for r in records if r.model_sha256 != model_sha), None)
    if stale is not None:
        raise StaleArtifactError(f"{inputs.certificates}: example {stale.index} was certified on model "
                                 f"{stale.model_sha256[:12]}..., not on {inputs.model} ({model_sha[:12]}...); re-run certify")
    rows = as_arrays(records, str(inputs.certificates))
    check_against_split(rows, split.labels, str(inputs.certificates))
    _check_settings(settings, rows)
    num_classes = int(max(split.labels.max(), rows.prediction.max())) + 1
    class_names = inputs.class_names or tuple(str(k) for k in range(num_classes))
    if len(class_names) < num_classes:
        raise InputError(f"{len(class_names)} class names for labels and predictions up to {num_classes - 1}; fix class_names in models/model.json")
    metadata = {key: value[rows.index] for key, value in split.metadata.items()}
    groups = all_groups(rows.label, metadata, class_names)
    out_dir = Path(inputs.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("least_robust_*.png"):  # from an earlier run with other examples
        stale.unlink()

    subgroups = subgroup_report(rows, groups, settings.radii, settings.gate_radius, settings.gate_threshold, settings.confidence)
    abstentions = abstention_report(rows, groups, settings.max_abstention_rate, settings.confidence)
    least = save_least_robust(rows, split.images if split.channels_last else split.images.transpose(0, 2, 3, 1), class_names, out_dir, settings.least_robust)
    seconds["subgroups_abstentions"] = time.perf_counter() - clock

    clock = time.perf_counter()
    covariance = covariance_from_record(settings.lighting, settings.sigma, split.image_shape_chw, "certify noise.covariance")
    mahalanobis = _mahalanobis_radii(records, covariance, str(inputs.certificates))
    classifier = SmoothedClassifier.from_onnx(inputs.model, settings.sigma, batch_size=settings.batch_size, threads=settings.threads, provider="cpu",
                                              lighting=covariance)
    session = open_session(inputs.model, settings.threads, "cpu")
    picked = choose_rows(rows, settings.max_examples, settings.seed, "corruptions")
    chosen = rows.subset(picked)
    clean, corruptions = evaluate_corruptions(
        classifier, session, split.model_input(chosen.index), chosen, settings.predict_n, settings.alpha,
        phase_seed(settings.seed, "corruptions"), settings.confidence, lighting=covariance,
        mahalanobis_radius=None if mahalanobis is None else mahalanobis[picked],
    )
    seconds["corruptions"] = time.perf_counter() - clock

    clock = time.perf_counter()
    attacked = rows.subset(choose_rows(rows, settings.attack_examples, settings.seed, "attack"))
    attack = attack_smoothed(
        attack_model, classifier, session, split.model_input(attacked.index), attacked, settings.attack_radii,
        settings.attack_steps, settings.attack_samples, settings.sigma, settings.predict_n, settings.confirm_n,
        settings.alpha, settings.confidence, phase_seed(settings.seed, "attack_noise"),
        phase_seed(settings.seed, "attack_screen"), phase_seed(settings.seed, "attack_confirm"),
    )
    if getattr(attack_model, "gradient_method", None):  # e.g. SPSA estimates for a supplied ONNX model
        attack.method = f"{attack.method} ({attack_model.gradient_method})"
    seconds["attack"] = time.perf_counter() - clock

    clock = time.perf_counter()
    quantization = None
    if inputs.quantization == "int8":
        if inputs.fp32_model is None:
            raise InputError("the shipped model is int8 but no fp32 model was given; pass models/model_fp32.onnx")
        sub = rows.subset(choose_rows(rows, settings.quantization_examples, settings.seed, "quantization"))
        quantization = quantization_drift(
            inputs.fp32_model, inputs.model, split.model_input(sub.index), sub.label, sub.index, settings.sigma,
            settings.radii, settings.quantization_noise_samples, min(100, settings.quantization_n), settings.quantization_n,
            settings.alpha, phase_seed(settings.seed, "quantization"), settings.confidence, settings.threads,
        ).to_dict()
    seconds["quantization"] = time.perf_counter() - clock

    clock = time.perf_counter()
    deployed = measure_deployed_predict(
        classifier, split.model_input(rows.index), rows.index.tolist(), rows.prediction.tolist(), settings.deploy_n,
        settings.deploy_alpha, phase_seed(settings.seed, "deployed"), settings.confidence, settings.latency_repeats,
        settings.threads)
    seconds["deployed"] = time.perf_counter() - clock
    triage = triage_reports(rows, np.asarray(deployed.predictions), metadata, class_names, inputs.malignant_classes,
                            settings.confidence, settings.gate_radius, settings.deploy_n, settings.deploy_alpha)

    clock = time.perf_counter()
    figures = {
        "attack_curves": plots.plot_attack_curves(attack, out_dir / "attack_curves.png"),
        "corruption_l2": plots.plot_corruption_l2(corruptions, float(np.median(chosen.radius)), out_dir / "corruption_l2.png"),
        "subgroups": plots.plot_subgroups(subgroups, out_dir / "subgroups.png"),
    }
    seconds["plots"] = time.perf_counter() - clock
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"path": Path(inputs.model).as_posix(), "sha256": model_sha, "quantization": inputs.quantization},
        "data": {"path": Path(inputs.data).as_posix(), "sha256": sha256_file(inputs.data)},
        "certificates": {"path": Path(inputs.certificates).as_posix(), "sha256": sha256_file(inputs.certificates), "n_rows": len(rows)},
        "settings": {**{k: v for k, v in asdict(settings).items() if k != "lighting" or v is not None},
                     "radii": list(settings.radii), "attack_radii": list(settings.attack_radii)},
        "subgroups": subgroups.to_dict(),
        "abstentions": abstentions.to_dict(),
        "least_robust": [asdict(example) for example in least],
        "corruptions": [result.to_dict() for result in corruptions],
        "corruptions_clean": clean.to_dict(),
        "attack": attack.to_dict(),
        "quantization": quantization,
        "triage": triage,
        "deployed": deployed_block(deployed, settings.max_abstention_rate),
        "plots": figures,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        **({} if covariance is None else
           {"lighting": lighting_block(covariance, split.model_input(chosen.index), chosen, mahalanobis[picked])}),
    }


def lighting_block(covariance: Any, images: np.ndarray, rows: CertificateArrays, mahalanobis: np.ndarray) -> dict[str, Any]:
    """The ``lighting`` block of a lighting run: the covariance and, over the variation examples that have a
    certificate, the median (and minimum) of the largest brightness offset, per-channel gain change and ramp
    strength each certificate covers (:meth:`certification.lighting.LightingCovariance.covered_extents`)."""
    extents = [covariance.covered_extents(x, r).to_dict() for x, r, abstained in zip(images, mahalanobis, rows.abstained)
               if not abstained]
    summary: dict[str, Any] = {"n_certified": len(extents)}
    for key in ("brightness_offset", "gain_change", "ramp_strength"):
        values = np.array([e[key] for e in extents], dtype=np.float64)
        summary[key] = ({"median": float(np.median(values)), "min": float(values.min())} if len(values)
                        else {"median": None, "min": None})
    return {"covariance": covariance.to_record(), "covered_extents": summary}


def triage_reports(rows: CertificateArrays, deployed_answers: np.ndarray, metadata: dict[str, np.ndarray],
                   class_names: Sequence[str], malignant: Sequence[str], confidence: float, gate_radius: float,
                   deploy_n: int, deploy_alpha: float) -> dict[str, Any]:
    """The ``triage`` block: CERTIFY's clean answers (r = 0), its answers certified at r* (``gate_radius``), and the
    deployed PREDICT's answers (row order of ``rows``), with two-sided intervals at ``confidence`` and per Fitzpatrick
    type when ``metadata`` (arrays over the rows) has it."""
    if not malignant:
        raise InputError("models/model.json declares no malignant_classes; the triage report needs them (re-run the export stage)")
    skin = fitzpatrick_groups(metadata["fitzpatrick"]) if "fitzpatrick" in metadata else []

    def report(answers: np.ndarray, procedure: str, radius: float | None) -> dict[str, Any]:
        return triage_report(rows.label, answers, class_names, malignant, confidence, procedure, radius, skin).to_dict()

    return {
        "clean": report(answers_at_radius(rows.prediction, rows.radius, 0.0), "CERTIFY (clean, radius 0)", 0.0),
        "certified": report(answers_at_radius(rows.prediction, rows.radius, gate_radius),
                            f"CERTIFY, certified at r* = {gate_radius:g}", gate_radius),
        "deployed": report(np.asarray(deployed_answers), f"PREDICT (n = {deploy_n}, alpha = {deploy_alpha:g})", None),
    }


def deployed_block(measurement: DeployedMeasurement, limit: float) -> dict[str, Any]:
    """The ``deployed`` block: the measurement, the gate's abstention limit and whether its upper bound is within it."""
    return {**measurement.to_dict(), "gate_limit": float(limit),
            "upper_within_gate_limit": bool(measurement.abstention_rate["upper"] <= limit)}


def summary_lines(document: dict[str, Any]) -> Sequence[str]:
    """A few human lines for the stage's stdout."""
    attack = document["attack"]
    not_covered = sorted({c["name"] for c in document["corruptions"] if c["coverage"] == "not covered"})
    return [
        f"subgroups flagged at r={document['subgroups']['gate_radius']:g}: {len(document['subgroups']['flagged'])} of {len(document['subgroups']['groups'])}",
        f"variations not covered by the certificate: {', '.join(not_covered) or 'none'}",
        f"attack: {attack['candidates']} candidates, {attack['confirmed_contradictions']} confirmed contradictions",
        *_lighting_lines(document),
        *_triage_lines(document),
    ]


def _lighting_lines(document: dict[str, Any]) -> list[str]:
    if "lighting" not in document:
        return []
    lines = []
    for name in ("brightness", "illumination_gradient", "color_temperature"):
        shares = [f"{c['lighting_certified_share_of_certified']:.2f}" for c in document["corruptions"] if c["name"] == name]
        if shares:
            lines.append(f"lighting certificate covers {name} for {' / '.join(shares)} of certified images (severity 1..)")
    return lines


def _triage_lines(document: dict[str, Any]) -> list[str]:
    triage, deployed = document.get("triage"), document.get("deployed")
    if not triage or not deployed:
        return []
    rates = triage["deployed"]["rates"]
    return [
        "triage (deployed PREDICT): " + ", ".join(
            f"{name} {'n/a' if rates[name]['estimate'] is None else format(rates[name]['estimate'], '.3f')} "
            f"(n {rates[name]['trials']})" for name in ("sensitivity", "specificity", "ppv", "npv")),
        f"deployed PREDICT n={deployed['n']}: abstention {deployed['abstention_rate']['estimate']:.3f} "
        f"(upper {deployed['abstention_rate']['upper']:.3f}), median latency {1000 * deployed['latency']['median_s']:.1f} ms",
    ]


def attack_curve_csv(document: dict[str, Any]) -> str:
    """plots/evaluate_attack_curve.csv: certified accuracy (and bound) beside empirical robust accuracy per radius."""
    attack = document["attack"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["radius", "certified_accuracy", "certified_lower_bound", "empirical_robust_accuracy", "empirical_upper_bound"])
    for certified, empirical in zip(attack["certified_accuracy"], attack["empirical_robust_accuracy"]):
        writer.writerow([certified["radius"], certified["certified_accuracy"], certified["lower_bound"], empirical["accuracy"], empirical["upper_bound"]])
    return buffer.getvalue()
