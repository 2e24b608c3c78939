"""The lighting part of the smoothed predictor graph (:mod:`certification.smoothed_graph`), and its metadata.

With a :class:`certification.lighting.LightingCovariance` Sigma = sigma^2 I + tau'^2 V^T V the graph adds, after the
isotropic RandomNormalLike(scale sigma) noise, the lighting noise of :class:`certification.lighting.LightingNoise`:

    RandomNormal z [k, K] (mean 0, scale 1) -> MatMul (tau' V) [K, C*H*W] -> Reshape [k, C, H, W] -> Add

so each copy's noise is N(0, Sigma), the distribution certification draws (float32 here; the library computes
z (tau' V) in float64 and rounds it once to float32). tau' = ``tau_norm`` = tau sqrt(D) is the standard deviation
along each unit direction v_k. The covariance is recorded as the metadata key ``lighting``
(JSON of :meth:`LightingCovariance.to_record`); an isotropic graph has no such key.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from certification.errors import InputError, ParameterError
from certification.lighting import LightingCovariance, covariance_from_record

#: Metadata key of the recorded covariance (absent on isotropic graphs).
LIGHTING_KEY = "lighting"
LIGHTING_DESCRIPTION = ("; plus lighting noise sum_k tau_norm z_k v_k: onnxruntime RandomNormal z [k, K] (same "
                        "generator, its own node) MatMul tau_norm V, V the orthonormal lighting directions (metadata "
                        "'lighting'), so each copy's noise is N(0, sigma^2 I + tau_norm^2 V^T V)")


def check_graph_lighting(lighting: LightingCovariance | None, sigma: float,
                         chw: tuple[int, int, int]) -> LightingCovariance | None:
    """The covariance to build into the graph (None: isotropic), checked against the graph's sigma and image shape."""
    if lighting is not None and not isinstance(lighting, LightingCovariance):
        raise InputError(f"lighting must be a LightingCovariance (certification.lighting) or None, got {type(lighting).__name__}")
    if lighting is None or lighting.isotropic:
        return None
    if lighting.sigma != float(sigma):
        raise InputError(f"the lighting covariance was built for sigma {lighting.sigma}, not the graph's {sigma}; "
                         "build it with the certified sigma")
    if tuple(lighting.chw) != tuple(chw):
        raise InputError(f"the lighting covariance was built for images {tuple(lighting.chw)}, but the model takes "
                         f"{tuple(chw)}; build it for the model's input shape")
    return lighting


def lighting_nodes(lighting: LightingCovariance, k: int, source: str, out: str,
                   seed: int | None) -> tuple[list[Any], list[Any]]:
    """(nodes, initializers) that compute ``out`` = ``source`` + the lighting noise of k copies ([k, C, H, W])."""
    from onnx import TensorProto, helper, numpy_helper

    attrs: dict[str, Any] = {"dtype": TensorProto.FLOAT, "mean": 0.0, "scale": 1.0, "shape": [int(k), lighting.k]}
    if seed is not None:
        attrs["seed"] = float(seed) + 1.0  # not the isotropic node's seed: its sequence would repeat in z
    scaled = (lighting.basis * lighting.tau_norm).astype(np.float32)  # as LightingNoise's scaled basis
    nodes = [helper.make_node("RandomNormal", [], ["lighting_z"], **attrs),
             helper.make_node("MatMul", ["lighting_z", "lighting_basis"], ["lighting_flat"]),
             helper.make_node("Reshape", ["lighting_flat", "lighting_shape"], ["lighting_noise"]),
             helper.make_node("Add", [source, "lighting_noise"], [out])]
    initializers = [numpy_helper.from_array(scaled, "lighting_basis"),
                    numpy_helper.from_array(np.array([int(k), *lighting.chw], dtype=np.int64), "lighting_shape")]
    return nodes, initializers


def lighting_metadata(lighting: LightingCovariance) -> str:
    """The metadata value of ``lighting``: the covariance record as JSON (keys sorted)."""
    return json.dumps(lighting.to_record(), sort_keys=True)


def lighting_from_metadata(props: Mapping[str, str], sigma: float, where: str) -> LightingCovariance | None:
    """The covariance a graph's metadata records (None: isotropic graph); InputError when the record is broken."""
    text = props.get(LIGHTING_KEY)
    if text is None:
        return None
    try:
        record = json.loads(text)
        covariance = covariance_from_record(record, sigma, where=f"{where} metadata 'lighting'")
    except (ValueError, ParameterError) as exc:
        raise InputError(f"{where}: metadata 'lighting' is not a lighting covariance ({str(exc).splitlines()[0][:200]}); "
                         "rebuild the graph (device stage)") from None
    if covariance is None or record.get("sigma") != sigma:
        raise InputError(f"{where}: metadata 'lighting' records sigma {record.get('sigma') if isinstance(record, dict) else None}, "
                         f"not the graph's {sigma}; rebuild the graph (device stage)")
    return covariance
