"""certify stage: CERTIFY the shipped ONNX model on the test split (or a seeded subset of it).

Reads params ``certify`` (:func:`pipeline.params.certify_params`: sigma null = the training sigma recorded in
models/model.json), models/model.onnx,
models/model.json (class names), results/protocol.json (the frozen protocol) and data/test.npz. Before the test
split is opened it writes results/test_access.json (:mod:`certification.prespecification`). Writes results/certify.jsonl (+ results/certify.tsv),
metrics/certify.json and plots/certify_curve.csv. An interrupted run resumes from results/certify.jsonl.partial.
``runtime.certify_backend: ray`` certifies on Ray workers (``runtime.certify_workers``, ``runtime.ray_address``): the
same files, the same certificates.
"""
from __future__ import annotations

from certification.certify_run import certify_files, run_metrics
from certification.fileio import sha256_file, write_text_atomic
from certification.prespecification import first_test_access, read_protocol_record, record_test_access, utc_now
from certification.model_card import load_model_description
from certification.ray_backend import RaySettings
from certification.summary import check_summary_options, curve_csv, write_certify_metrics
from pipeline import layout
from pipeline.params import certify_params, run_options
from pipeline.stage import run_stage
from pipeline.tracking import log_stage

def record_first_test_read() -> None:
    """Record, before the sealed test split is read, that it is opened now and under which frozen protocol; a split
    opened before keeps its FIRST opening (the output is ``persist``-ed), so re-freezing a changed protocol after
    the test split was read can never look like pre-specification."""
    record = read_protocol_record(layout.PROTOCOL_RECORD)
    opened = utc_now()
    data_sha256 = sha256_file(layout.TEST_SPLIT)
    if first_test_access(layout.TEST_ACCESS, data_sha256) is None:
        record_test_access(layout.TEST_ACCESS, record, "certify", layout.TEST_SPLIT, data_sha256, opened)


def main() -> int:
    card = load_model_description(layout.MODEL_CARD)
    params = certify_params(card)
    check_summary_options(params["radii"], params["confidence"])
    record_first_test_read()
    ray = RaySettings(address=params["ray_address"], workers=params["workers"]) if params["backend"] == "ray" else None
    outcome, classifier, split = certify_files(layout.MODEL, layout.TEST_SPLIT, layout.CERTIFY_RESULTS, run_options(params),
                                               params["n0"], params["n"], num_classes=len(card["class_names"]), ray=ray)
    metrics = run_metrics(outcome, classifier, split, model_path=layout.MODEL, data_path=layout.TEST_SPLIT,
                          max_examples=params["max_examples"], radii=params["radii"], confidence=params["confidence"],
                          class_names=card["class_names"], batch_size=params["batch_size"])
    write_certify_metrics(layout.CERTIFY_METRICS, metrics)
    write_text_atomic(layout.CERTIFY_CURVE, curve_csv(metrics["curve"]))
    log_stage(
        "certify",
        params=metrics["params"],
        metrics={
            "clean_accuracy": metrics["clean_accuracy"]["estimate"],
            "abstention_rate": metrics["abstention_rate"]["estimate"],
            "average_certified_radius": metrics["average_certified_radius"],
            **{f"certified_accuracy_r{row['radius']:g}": row["certified_accuracy"] for row in metrics["curve"]},
            **{f"certified_lower_r{row['radius']:g}": row["lower_bound"] for row in metrics["curve"]},
        },
        artifacts=[layout.CERTIFY_METRICS, layout.CERTIFY_CURVE, layout.CERTIFY_TSV],
        tags={"smoothcert.model_sha256": classifier.base_classifier.sha256},
    )
    print(f"certify: {metrics['n_examples']} examples, clean accuracy {metrics['clean_accuracy']['estimate']:.3f}, "
          f"ACR {metrics['average_certified_radius']:.3f}; wrote {layout.CERTIFY_RESULTS}, {layout.CERTIFY_METRICS}, "
          f"{layout.CERTIFY_CURVE}")
    return 0


if __name__ == "__main__":
    run_stage("certify", main)
