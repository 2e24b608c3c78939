"""The one place that names the pipeline's files (paths relative to the repository root).

Every stage takes its paths from here; ``dvc.yaml`` lists the same paths as each stage's deps and outs, and
``tests/pipeline/test_dvc_layout.py`` fails when the two disagree or when a stage imports a project file that
its ``deps`` do not cover.
"""
from __future__ import annotations

import os
from pathlib import Path

# data stage
DATA_DIR = Path("data")
TRAIN_SPLIT = DATA_DIR / "train.npz"
VAL_SPLIT = DATA_DIR / "val.npz"
TEST_SPLIT = DATA_DIR / "test.npz"
DATASHEET = DATA_DIR / "datasheet.json"

# train stage
CHECKPOINT = Path("models/model.pt")
TRAIN_METRICS = Path("metrics/train.json")
TRAIN_HISTORY = Path("plots/train_history.csv")

# export stage
MODEL = Path("models/model.onnx")  # the shipped, certified artifact
MODEL_FP32 = Path("models/model_fp32.onnx")
MODEL_CARD = Path("models/model.json")
EXPORT_METRICS = Path("metrics/export.json")

# validate stage (sigma selection on the validation split; the test split stays sealed)
VALIDATION_METRICS = Path("metrics/validation.json")
# device stage: what runs on the device, and the detached signatures of what ships
SMOOTHED_MODEL = Path("models/smoothed.onnx")  # the smoothed predictor: counts over k noisy copies
MODEL_SIGNATURE = Path("models/model.onnx.p7s")
SMOOTHED_SIGNATURE = Path("models/smoothed.onnx.p7s")
DEVICE_CARD = Path("models/smoothed.json")
#: single-core latency of the smoothed predictor (benchmarks/device_latency.py; committed, read by the dossier)
DEVICE_LATENCY = Path("benchmarks/device_latency.json")
#: the training-method benchmark record (benchmarks/training_methods.py at the shipped settings; committed, read by the
#: dossier's "Choice of training method")
METHOD_BENCHMARK = Path("benchmarks/results/training_methods.json")

# protocol stage (runs before the test split is opened)
PROTOCOL_RECORD = Path("results/protocol.json")

# certify stage
TEST_ACCESS = Path("results/test_access.json")  # the first opening of the sealed test split
CERTIFY_RESULTS = Path("results/certify.jsonl")
CERTIFY_TSV = Path("results/certify.tsv")
CERTIFY_METRICS = Path("metrics/certify.json")
CERTIFY_CURVE = Path("plots/certify_curve.csv")

# evaluate stage
EVALUATE_DIR = Path("results/evaluate")
EVALUATE_METRICS = Path("metrics/evaluate.json")
EVALUATE_ATTACK_CURVE = Path("plots/evaluate_attack_curve.csv")

# gate stage
GATE_DECISIONS = Path("results/gate.jsonl")
GATE_METRICS = Path("metrics/gate.json")
GATE_MARKER = Path("plots/gate_radius.csv")  # r* and its threshold: the marker of the certified-accuracy plot

# dossier stage
DOSSIER_DIR = Path("dossier")
EVIDENCE = DOSSIER_DIR / "evidence.json"
DOSSIER_UNSIGNED = DOSSIER_DIR / "dossier_unsigned.pdf"
DOSSIER_SIGNED = DOSSIER_DIR / "dossier.pdf"
#: the dossier's words; SMOOTHCERT_TEMPLATES overrides it (supplied_model/dvc.yaml runs in its own folder and points
#: it at the repository's ../dossier_templates)
TEMPLATES = Path(os.environ.get("SMOOTHCERT_TEMPLATES", "dossier_templates"))

# verdict stage: with validate's metrics/validation.json, the only files DVC shows as metrics (`dvc metrics show`,
# `dvc exp show`); every other JSON above is a plain output (provenance, SHAs, seconds, thread counts stay out of the metrics table)
HEADLINE = Path("metrics/headline.json")

#: The evaluation's figures (subgroups, attack curves, corruptions, least robust examples): every PNG of
#: EVALUATE_DIR, which dvc.yaml's top-level `plots:` shows as image plots.
EVALUATE_FIGURES_GLOB = "*.png"

#: What each stage writes (its ``outs``, ``metrics`` and ``plots`` in dvc.yaml).
STAGE_OUTPUTS: dict[str, tuple[Path, ...]] = {
    "data": (TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT, DATASHEET),
    "train": (CHECKPOINT, TRAIN_METRICS, TRAIN_HISTORY),
    "export": (MODEL, MODEL_FP32, MODEL_CARD, EXPORT_METRICS),
    "validate": (VALIDATION_METRICS,),
    "device": (SMOOTHED_MODEL, MODEL_SIGNATURE, SMOOTHED_SIGNATURE, DEVICE_CARD),
    "protocol": (PROTOCOL_RECORD,),
    "certify": (TEST_ACCESS, CERTIFY_RESULTS, CERTIFY_TSV, CERTIFY_METRICS, CERTIFY_CURVE),
    "evaluate": (EVALUATE_DIR, EVALUATE_METRICS, EVALUATE_ATTACK_CURVE),
    "gate": (GATE_DECISIONS, GATE_METRICS, GATE_MARKER),
    "dossier": (EVIDENCE, DOSSIER_UNSIGNED, DOSSIER_SIGNED),
    "verdict": (HEADLINE,),
}

#: The pipeline files each stage reads (its data ``deps`` in dvc.yaml; code deps are checked separately).
STAGE_INPUTS: dict[str, tuple[Path, ...]] = {
    "data": (),
    "train": (TRAIN_SPLIT, VAL_SPLIT, DATASHEET),
    "export": (CHECKPOINT, TRAIN_METRICS, TRAIN_SPLIT, VAL_SPLIT, DATASHEET),
    "validate": (MODEL, MODEL_CARD, VAL_SPLIT),
    "device": (MODEL, MODEL_CARD),
    "protocol": (),
    "certify": (PROTOCOL_RECORD, MODEL, MODEL_CARD, TEST_SPLIT),
    "evaluate": (MODEL, MODEL_FP32, CHECKPOINT, MODEL_CARD, TEST_SPLIT, CERTIFY_RESULTS, CERTIFY_METRICS),
    "gate": (PROTOCOL_RECORD, CERTIFY_RESULTS, CERTIFY_METRICS, MODEL_CARD, MODEL, TEST_SPLIT),
    "dossier": (PROTOCOL_RECORD, TEST_ACCESS, MODEL, MODEL_CARD, DATASHEET, TEST_SPLIT, TRAIN_METRICS, EXPORT_METRICS, CERTIFY_METRICS,
                CERTIFY_RESULTS, EVALUATE_METRICS, EVALUATE_DIR, GATE_METRICS, TEMPLATES, DEVICE_CARD, MODEL_SIGNATURE,
                SMOOTHED_MODEL, DEVICE_LATENCY, METHOD_BENCHMARK),
    "verdict": (GATE_METRICS, CERTIFY_METRICS, MODEL_CARD, EVIDENCE),
}

#: The supplied-model pipeline (supplied_model/dvc.yaml, run in that folder): the stage ``model`` imports the user's
#: ONNX file (params ``model.path``) in place of train and export; every other stage is the training pipeline's,
#: with the same outputs (under supplied_model/) and without the inputs only training makes.
SUPPLIED_STAGES = ("data", "model", "protocol", "certify", "evaluate", "gate", "dossier", "verdict")
SUPPLIED_STAGE_OUTPUTS: dict[str, tuple[Path, ...]] = {
    **{stage: STAGE_OUTPUTS[stage] for stage in SUPPLIED_STAGES if stage != "model"},
    "model": (MODEL, MODEL_CARD, EXPORT_METRICS),
}
SUPPLIED_STAGE_INPUTS: dict[str, tuple[Path, ...]] = {
    **{stage: tuple(p for p in STAGE_INPUTS[stage] if p not in (CHECKPOINT, TRAIN_METRICS, MODEL_FP32, METHOD_BENCHMARK))
       for stage in SUPPLIED_STAGES if stage != "model"},
    "model": (VAL_SPLIT, DATASHEET),
}
