"""Stage ``device``: the smoothed predictor for the device and the signatures of what ships.

Reads models/model.onnx (the shipped, certified artifact) and models/model.json, params ``deploy`` (n: the k noisy
copies per image of the device's PREDICT, alpha), the certified sigma (``certify.sigma``, or the model's training
sigma), the certified lighting covariance (``certify.lighting``, built by the function certification builds it
with) and the dossier's key rules (``dossier.signing_key``/$SMOOTHCERT_SIGNING_KEY, ``dossier.passphrase_env``;
empty: the development key). Writes models/smoothed.onnx, models/model.onnx.p7s, models/smoothed.onnx.p7s and the
device card models/smoothed.json through :func:`certification.device_run.device_files`.
"""
from __future__ import annotations

from certification.device_card import write_device_card
from certification.device_run import device_files
from certification.fileio import read_json
from certification.signing.choice import choose_signer
from certification.lighting import smoothing_covariance
from certification.smoothed_graph import base_input_chw, check_k
from pipeline import layout
from pipeline.params import KEYS as CERTIFY_KEYS, OPTIONAL_KEYS as CERTIFY_OPTIONAL, lighting_params, resolve_sigma
from pipeline.stage import load_section, run_stage
from pipeline.tracking import log_stage

DEPLOY_KEYS = {"n": int, "alpha": float, "latency_repeats": int}
DOSSIER_KEYS = {"signing_key": str, "passphrase_env": str, "approval_fields": list, "tsa_url": str, "trust_root": str,
                "require_approvals": bool}
DOSSIER_OPTIONAL = {"validation_data": str}  # the dossier stage's; the device's signatures are detached CMS


def main() -> int:
    deploy = load_section("deploy", DEPLOY_KEYS)
    certify = load_section("certify", CERTIFY_KEYS, optional=CERTIFY_OPTIONAL)
    sigma = resolve_sigma(certify, read_json(layout.MODEL_CARD))
    lighting = lighting_params(certify.get("lighting"), "certify.lighting", sigma)
    keys = load_section("dossier", DOSSIER_KEYS, optional=DOSSIER_OPTIONAL)
    k = check_k(deploy["n"])  # before a development PKI is created
    covariance = None if lighting["directions"] == "none" else smoothing_covariance(
        lighting["directions"], lighting["tau"], sigma, base_input_chw(layout.MODEL))
    chosen = choose_signer(keys["signing_key"], keys["passphrase_env"])
    card = device_files(layout.MODEL, layout.SMOOTHED_MODEL, k, sigma, deploy["alpha"], chosen, lighting=covariance)
    write_device_card(layout.DEVICE_CARD, card)
    smoothed = card["smoothed"]
    light = "" if covariance is None else f", lighting {covariance.directions} tau {covariance.tau}"
    print(f"device: {layout.SMOOTHED_MODEL} (k {smoothed['k']}, sigma {smoothed['sigma']}{light}, alpha {smoothed['alpha']}, "
          f"sha256 {smoothed['sha256'][:12]}...); signed {layout.MODEL} and {layout.SMOOTHED_MODEL} "
          f"({'DEVELOPMENT key, not for submission' if chosen.development else 'production key'})")
    log_stage("device", {**deploy, "sigma": sigma, "signing_key": card["signing_key"]}, {},
              artifacts=[layout.DEVICE_CARD], tags={"smoothcert.smoothed_sha256": smoothed["sha256"]})
    return 0


if __name__ == "__main__":
    run_stage("device", main)
