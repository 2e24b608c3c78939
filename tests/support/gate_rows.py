"""Hand-made certify rows and the gate's view of them (decisions at r*), for gate and CLI tests."""
from __future__ import annotations

from certification.gate import Protocol, Verdict, evaluate
from certification.records import CertifyRecord, DecisionRecord

CLASSES = ["nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma"]
MALIGNANT = ["melanoma", "basal_cell_carcinoma"]
ALPHA = 0.001
SHA = "ab" * 32
PROTOCOL = {"radius": 0.25, "min_certified_accuracy_lower": 0.6, "min_malignant_recall_lower": 0.5,
            "max_abstention_rate": 0.2, "min_clean_accuracy": 0.6, "confidence": 0.95, "mode": "fixed"}
ALL_CRITERIA = ["certified_accuracy", "certified_recall_melanoma", "certified_recall_basal_cell_carcinoma",
                "abstention_rate", "clean_accuracy"]


def certify_row(index: int, label: int, prediction: int, radius: float) -> dict:
    """A results/certify.jsonl row (radius 0 when abstaining)."""
    return {"index": index, "label": label, "prediction": prediction, "correct": prediction == label,
            "radius": radius if prediction != -1 else 0.0, "n0": 100, "n": 10000, "n_a": 9000, "p_lower": 0.9, "alpha": ALPHA,
            "sigma": 0.25, "seed": 3, "seconds": 0.1, "counts_selection": [0, 0, 0, 0], "counts_estimation": [0, 0, 0, 0],
            "model_sha256": SHA, "data_sha256": "d" * 64}


def good_rows(per_class: int = 50) -> list[dict]:
    """Every example correct with radius 0.5 (> r* = 0.25)."""
    return [certify_row(i, i // per_class, i // per_class, 0.5) for i in range(4 * per_class)]


def protocol(**changes: object) -> Protocol:
    return Protocol.from_dict({**PROTOCOL, **changes})


def decisions(rows: list[dict], radius: float = PROTOCOL["radius"]) -> list[DecisionRecord]:
    """Rows as the gate judges them: certify rows become decisions at ``radius``; decision rows are read as they are."""
    return [DecisionRecord.from_certify(CertifyRecord.from_dict(r), radius) if "radius" in r
            else DecisionRecord.from_dict(r) for r in rows]


def judge(rows: list[dict], proto: Protocol | None = None) -> Verdict:
    proto = proto or protocol()
    return evaluate(decisions(rows, proto.radius), proto, CLASSES, MALIGNANT, ALPHA, SHA)


def with_changes(rows: list[dict], indices: range, prediction: int | None = None, radius: float | None = None) -> list[dict]:
    rows = [dict(r) for r in rows]
    for i in indices:
        label = rows[i]["label"]
        pred = label if prediction is None else prediction
        rows[i] = certify_row(i, label, pred, rows[i]["radius"] if radius is None else radius)
    return rows
