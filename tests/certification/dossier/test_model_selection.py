"""Section 6 "Choice of training method": generated from the training-method record through its one reader and the
issue's target rule; says plainly when params.yaml's method is not the rule's pick, whether the benchmark row is the
shipped model itself or a retraining, and in one sentence when there is no record or the model was supplied."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from certification.dossier.attachments import read_pdf_content
from certification.dossier.build import SignerIdentity, build_dossier
from certification.dossier.evidence import collect_evidence
from certification.dossier.layout import styles
from certification.dossier.model_selection import model_selection_section
from certification.dossier.templates import load_texts
from certification.errors import InputError
from certification.fileio import read_json, write_json_atomic
from certification.method_benchmark import write_method_record
from pipeline import layout
from pipeline.dossier import evidence_inputs
from support.dossier_outputs import make_outputs
from support.method_records import record, row
from support.signed_dossier import APPROVALS, PARAMS, TEMPLATES

SIGNER = SignerIdentity(development_key=True, signer="dev", trust_anchor_sha256="0" * 64)
GAUSSIAN = dict(acr=0.40, clean=0.90, melanoma=0.60, bcc=0.50, seconds=100.0)
#: the measured outcome of issue 17 in miniature: 1.09x ACR at -7.5 points clean accuracy, so gaussian stays
CONSISTENCY = dict(acr=0.436, clean=0.825, melanoma=0.64, bcc=0.52, seconds=185.0)


def _params(method: str = "gaussian") -> dict:
    return {**PARAMS, "train": {"method": method, "sigma": 0.25}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_outputs(tmp_path_factory.mktemp("model-selection"))


@pytest.fixture()
def root(outputs: Path, tmp_path: Path) -> Path:
    shutil.copytree(outputs, tmp_path / "root")
    return tmp_path / "root"


def _write_record(root: Path, gaussian_sha: str | None = None, epochs: int = 2, **kwargs) -> None:
    """The record of the two methods at sigma 0.25 and 0.5 on the root's splits; the gaussian 0.25 row is the shipped
    model unless ``gaussian_sha`` names another."""
    card, sheet = read_json(root / layout.MODEL_CARD), read_json(root / layout.DATASHEET)
    rows = [row("gaussian", 0.25, sha=gaussian_sha or card["sha256"], epochs=epochs, **GAUSSIAN),
            row("consistency", 0.25, epochs=epochs, **CONSISTENCY),
            row("gaussian", 0.5, epochs=epochs, **GAUSSIAN), row("consistency", 0.5, epochs=epochs, **{**CONSISTENCY, "acr": 0.5})]
    data = {name: s["sha256"] for name, s in sheet["splits"].items()}
    write_method_record(root / layout.METHOD_BENCHMARK, record(*rows, data=kwargs.get("data", data)))


def _text(root: Path, params: dict) -> tuple[dict, str]:
    built = build_dossier(evidence_inputs(root), params, TEMPLATES, APPROVALS, SIGNER)
    return built.evidence, "".join(read_pdf_content(built.unsigned_pdf).text.split())


def _section(root: Path, params: dict) -> tuple[dict, str]:
    """The section's words alone (no PDF), for the variants the PDF tests do not build."""
    evidence = collect_evidence(evidence_inputs(root), params, {}, {"approvals": {}})
    flowables = model_selection_section(evidence, load_texts(TEMPLATES, evidence), styles())
    return evidence["model_selection"], " ".join(getattr(f, "text", "") for f in flowables)


def test_record_present_and_the_default_is_the_rules_pick(root: Path) -> None:
    _write_record(root)
    evidence, text = _text(root, _params("gaussian"))
    block = evidence["model_selection"]
    assert block["status"] == "present" and block["selection"]["pick"] == "gaussian" and block["identity"]["kind"] == "same_model"
    assert "6ModeldevelopmentThenetwork" in text and "Choiceoftrainingmethod" in text
    assert "ACRisatleast1.2timesgaussian" in text and "atmost2percentagepointslower" in text and "atmost3times" in text
    assert "Recordbenchmarks/results/training_methods.json" in text and block["record_sha256"] in text
    assert "ranonthedatasplitsofthisdossier" in text
    assert "thebestcandidate,consistency,missesthetarget(ACRratio,cleanaccuracychange):therulepicksgaussian." in text
    assert "params.yamltrain.methodisgaussian,themethodtherulepicks." in text
    assert "isthesamemodelasthebenchmark" in text and "gaussianrowatsigma0.25" in text
    assert "retraining" not in text and "NOTthemethod" not in text
    # numbers from the record, through the rule: ratios and changes as measured, with the thresholds
    assert ">=1.20x1.09xNO" in text and ">=-2.0points-7.5pointsNO" in text and "<=3.00x1.85xyes" in text
    assert "0.25(shipped)" in text and "0.5consistency" in text  # the other sigma, for context
    assert "90.0%(85.0%)" in text and "0.436" in text


def test_record_present_and_the_shipped_model_is_a_retraining(root: Path) -> None:
    _write_record(root, gaussian_sha="e" * 64)
    evidence, text = _text(root, _params("consistency"))
    block = evidence["model_selection"]
    assert block["identity"] == {"kind": "retrained", "row_sha256": "e" * 64, "differences": []}
    assert "params.yamltrain.methodisconsistency,NOTthemethodtherulepicks(gaussian)" in text
    assert "isaretrainingwiththesameparams;weightsdiffer(benchmarkmodelSHA-256" + "e" * 64 in text
    assert "isthesamemodel" not in text and "themethodtherulepicks." not in text


def test_no_record_is_one_sentence(root: Path) -> None:
    evidence, text = _text(root, _params())
    assert evidence["model_selection"] == {"status": "absent", "source": "benchmarks/results/training_methods.json"}
    assert ("Choiceoftrainingmethod" "Notraining-methodbenchmarkrecordwasfound(benchmarks/results/training_methods.json):"
            "thisdossiergivesnomeasuredreasonforthechoiceoftrainingmethod.") in text
    assert "therulepicks" not in text


def test_a_supplied_model_is_one_sentence_even_with_a_record(root: Path) -> None:
    _write_record(root)
    card = read_json(root / layout.MODEL_CARD)
    card["supplied"] = {"source": "user_model.onnx", "sha256": card["sha256"], "trained_by_pipeline": False,
                        "input_adaptation": []}
    write_json_atomic(root / layout.MODEL_CARD, card)
    (root / layout.TRAIN_METRICS).unlink()
    evidence, text = _text(root, _params())
    assert evidence["model_selection"]["status"] == "supplied" and evidence["train"] is None
    assert "ThemodelwasSUPPLIED(params.yamlmodel.path):thispipelinechosenotrainingmethod" in text
    assert "therulepicks" not in text and "Recordbenchmarks" not in text


def test_other_settings_other_data_and_the_float_export(root: Path) -> None:
    _write_record(root, gaussian_sha="e" * 64, epochs=12, data={"test": "1" * 64, "train": "2" * 64, "val": "3" * 64})
    block, text = _section(root, _params())
    assert block["identity"]["kind"] == "retrained_other" and block["data"] == {"same": False, "differs": ["test", "train", "val"]}
    assert "trained with other settings (12 epochs, shipped 2)" in text and "ran on OTHER data" in text
    card = read_json(root / layout.MODEL_CARD)
    write_json_atomic(root / layout.MODEL_CARD, {**card, "fp32_sha256": "e" * 64, "quantization": "int8"})
    block, text = _section(root, _params())
    assert block["identity"]["kind"] == "same_float_model" and "is the shipped model's float export" in text


def test_a_record_without_the_shipped_sigma_or_with_the_pick_met(root: Path) -> None:
    card = read_json(root / layout.MODEL_CARD)
    met = record(row("gaussian", 0.25, sha=card["sha256"], **GAUSSIAN),
                 row("consistency", 0.25, **{**GAUSSIAN, "acr": 0.5, "seconds": 150.0}))
    write_method_record(root / layout.METHOD_BENCHMARK, met)
    block, text = _section(root, _params())
    assert block["selection"]["pick"] == "consistency" and "meets every criterion of the target: the rule picks consistency" in text
    assert "params.yaml train.method is gaussian, NOT the method the rule picks (consistency)" in text
    write_method_record(root / layout.METHOD_BENCHMARK, record(row("gaussian", 0.5), row("consistency", 0.5)))
    block, text = _section(root, _params())
    assert block["status"] == "no_baseline" and "has no gaussian row at the shipped sigma 0.25 (it has sigma 0.5)" in text
    write_method_record(root / layout.METHOD_BENCHMARK, record(row("gaussian", 0.25, sha=card["sha256"])))
    block, text = _section(root, _params())
    assert "holds no method other than gaussian at the shipped sigma 0.25" in text
    assert "is the same model as the benchmark's gaussian row" in text


def test_a_malformed_or_unfinished_record_stops_the_dossier(root: Path) -> None:
    _write_record(root)
    document = json.loads((root / layout.METHOD_BENCHMARK).read_text())
    document["rows"][0]["method"] = "smoothadv"
    (root / layout.METHOD_BENCHMARK).write_text(json.dumps(document))
    with pytest.raises(InputError, match="training_methods.json: rows\\[0\\]: unknown method 'smoothadv'"):
        collect_evidence(evidence_inputs(root), _params(), {}, {"approvals": {}})
    write_method_record(root / layout.METHOD_BENCHMARK, replace(record(row("gaussian")), partial=True))
    with pytest.raises(InputError, match="partial record"):
        collect_evidence(evidence_inputs(root), _params(), {}, {"approvals": {}})
