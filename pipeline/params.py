"""Params sections read by more than one stage, validated in one place (the stages never import each other).

``certify`` holds what decides a certificate; ``runtime`` holds the knobs that only change how fast or where it is
computed (batch size, onnxruntime and noise threads, the local or Ray backend, its workers and cluster address). No stage lists ``runtime`` among its params in dvc.yaml, so changing
it reruns nothing; the section is optional (defaults below).
"""
from __future__ import annotations

from typing import Any, Mapping

from certification.certify_run import RunOptions
from certification.errors import ParameterError
from certification.lighting import check_lighting
from pipeline import layout
from pipeline.stage import PARAMS_FILE, load_document, load_section

KEYS: dict[str, Any] = {
    "sigma": (float, type(None)),
    "n0": int,
    "n": int,
    "alpha": float,
    "max_examples": int,
    "seed": int,
    "confidence": float,
    "radii": list,
}
#: Optional ``certify`` keys: ``lighting: {directions: none | dc | dc+ramps, tau: T}`` (:mod:`certification.lighting`).
OPTIONAL_KEYS: dict[str, Any] = {"lighting": (dict, type(None))}
LIGHTING_KEYS = ("directions", "tau")

#: ``runtime:`` keys and their defaults (null threads: the library's defaults, half the cores each; backend local:
#: this process; ray: Ray workers, on a local Ray started for the run when ``ray_address`` is null or "").
RUNTIME_DEFAULTS: dict[str, Any] = {"certify_batch_size": 250, "onnx_threads": None, "noise_threads": None,
                                    "certify_backend": "local", "certify_workers": None, "ray_address": None}
#: Keys that are not positive integers (or null): their allowed values.
TEXT_KEYS = {"certify_backend": ("local", "ray")}
MOVED_TO_RUNTIME = {"batch_size": "certify_batch_size", "backend": "certify_backend", "workers": "certify_workers",
                    "ray_address": "ray_address"}


def resolve_sigma(params: Mapping[str, Any], card: Mapping[str, Any]) -> float:
    """certify.sigma, or the model's training sigma (models/model.json ``train_sigma``) when it is null."""
    if params["sigma"] is not None:
        return float(params["sigma"])
    sigma = card.get("train_sigma")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ParameterError(f"certify.sigma is null and {layout.MODEL_CARD} records train_sigma {sigma!r}; "
                             "set certify.sigma to a positive number")
    return float(sigma)


def runtime_params() -> dict[str, Any]:
    """The optional ``runtime`` section merged over :data:`RUNTIME_DEFAULTS`; each value a positive int (threads: or null)."""
    section = load_document().get("runtime") or {}
    if not isinstance(section, dict):
        raise ParameterError(f"{PARAMS_FILE}: 'runtime:' must be a mapping of {', '.join(RUNTIME_DEFAULTS)}")
    unknown = sorted(set(section) - set(RUNTIME_DEFAULTS))
    if unknown:
        raise ParameterError(f"{PARAMS_FILE}: unknown key 'runtime.{unknown[0]}'; allowed keys: {', '.join(RUNTIME_DEFAULTS)}")
    values = {**RUNTIME_DEFAULTS, **section}
    for key, allowed in TEXT_KEYS.items():
        if values[key] not in allowed:
            raise ParameterError(f"{PARAMS_FILE}: 'runtime.{key}' must be one of {', '.join(allowed)}, got {values[key]!r}")
    if values["ray_address"] is not None and not isinstance(values["ray_address"], str):
        raise ParameterError(f"{PARAMS_FILE}: 'runtime.ray_address' must be HOST:PORT, ray://HOST:PORT, auto, or null "
                             f"(start a local Ray), got {values['ray_address']!r}")
    for key, value in values.items():
        if key in TEXT_KEYS or key == "ray_address":
            continue
        nullable = key != "certify_batch_size"
        if (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            continue
        raise ParameterError(f"{PARAMS_FILE}: 'runtime.{key}' must be a positive integer{' or null' if nullable else ''}, "
                             f"got {value!r}")
    return values


def certify_params(card: Mapping[str, Any]) -> dict[str, Any]:
    """The ``certify`` section with sigma resolved against the model card and ``batch_size`` taken from ``runtime``,
    every number checked before any work."""
    section = load_document().get("certify")
    if isinstance(section, dict):
        for old, new in MOVED_TO_RUNTIME.items():
            if old in section:
                raise ParameterError(f"{PARAMS_FILE}: 'certify.{old}' moved to 'runtime.{new}' (it never changes a "
                                     "certificate, so changing it must not rerun the pipeline); move the line there")
    params = load_section("certify", KEYS, optional=OPTIONAL_KEYS)
    params["sigma"] = resolve_sigma(params, card)
    params["lighting"] = lighting_params(params.get("lighting"), "certify.lighting", params["sigma"])
    runtime = runtime_params()
    params["batch_size"] = runtime["certify_batch_size"]
    params["threads"], params["noise_threads"] = runtime["onnx_threads"], runtime["noise_threads"]
    params["backend"], params["workers"] = runtime["certify_backend"], runtime["certify_workers"]
    params["ray_address"] = runtime["ray_address"] or None
    run_options(params).check(params["n0"], params["n"])
    return params


def lighting_params(section: Any, where: str, sigma: float | None) -> dict[str, Any]:
    """A ``lighting:`` mapping {directions, tau} (absent or null: ``none``, tau 0), its keys and values checked
    (:func:`certification.lighting.check_lighting`, with the run's ``sigma``; errors name ``where``)."""
    if section is None:
        return {"directions": "none", "tau": 0.0}
    if not isinstance(section, dict):
        raise ParameterError(f"{PARAMS_FILE}: '{where}' must be a mapping {{directions: none | dc | dc+ramps, tau: T}}, got {section!r}")
    unknown = sorted(set(section) - set(LIGHTING_KEYS))
    missing = [key for key in LIGHTING_KEYS if key not in section]
    if unknown or missing:
        raise ParameterError(f"{PARAMS_FILE}: '{where}' needs exactly the keys directions and tau "
                             f"({'unknown ' + unknown[0] if unknown else 'missing ' + missing[0]})")
    check_lighting(section["directions"], section["tau"], sigma, where)
    return {"directions": section["directions"], "tau": section["tau"]}


def run_options(params: Mapping[str, Any]) -> RunOptions:
    """The run options of a resolved ``certify`` section (provider: the library's default)."""
    lighting = params.get("lighting") or {"directions": "none", "tau": 0.0}
    return RunOptions(sigma=params["sigma"], alpha=params["alpha"], seed=params["seed"], batch_size=params["batch_size"],
                      max_examples=params["max_examples"], threads=params.get("threads"),
                      noise_threads=params.get("noise_threads"), lighting_directions=lighting["directions"],
                      lighting_tau=lighting["tau"])
