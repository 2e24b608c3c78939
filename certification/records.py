"""The per-example record schemas and their one reader and writer.

Two kinds of rows, one JSON object per line:

* :class:`CertifyRecord` (``results/certify.jsonl``, ``smoothcert certify``, shards and their merge): CERTIFY's
  answer for one example, keys in :data:`CERTIFY_KEYS` order, naming the model and the data split it was computed
  on by SHA-256 (so a shard, a gate or a dossier can refuse rows of another run). ``prediction`` is the class or
  :data:`ABSTAIN`;
  ``radius`` is an L2 norm in [0,1]-pixel units, 0.0 when abstaining; ``correct`` means a non-abstaining
  prediction equal to the label. A row of an incremental certification (:mod:`certification.incremental`)
  carries one more key, ``incremental`` (:data:`INCREMENTAL_KEYS`): the original certificates' file by SHA-256,
  the original model, bound and alpha, and the disagreement samples; its ``p_lower`` and ``radius`` are the
  approximate model's and its ``alpha`` the total of both bounds. Rows without it are byte for byte as before.
* :class:`DecisionRecord` (``results/gate.jsonl``, ``smoothcert decide``): "is the example certified at radius
  r*?", by the sequential test (mode ``sequential``) or read off a certify row (mode ``fixed``).

Every reader validates each row (keys, types, ``correct`` consistent with prediction and label, finite
non-negative radii, an abstention with radius 0) and raises one-line :class:`~certification.errors.InputError`
naming the file and line. The writers produce the bytes the pipeline has always produced (certify rows in key
order, decision rows with sorted keys), so hashes of earlier runs stay valid.
:func:`certification.certificate_arrays.as_arrays`
turns certify records into the parallel arrays the dataset summaries count.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping


from certification.errors import InputError
from certification.record_fields import counts_field, digest_field, flag_field, integer_field, read_text, real_field

#: The prediction of an abstaining smoothed classifier.
ABSTAIN = -1
CERTIFY_KEYS = (
    "index", "label", "prediction", "correct", "radius", "n0", "n", "n_a", "p_lower",
    "alpha", "sigma", "seed", "seconds", "counts_selection", "counts_estimation", "model_sha256", "data_sha256",
)
#: The ``incremental`` object of an incremental certificate row (see :mod:`certification.incremental`).
INCREMENTAL_KEYS = ("from_sha256", "original_model_sha256", "original_p_lower", "original_alpha", "alpha_zeta",
                    "noise_phase", "n_p", "disagreements", "zeta_upper")

#: Optional key of a lighting run (anisotropic smoothing, :mod:`certification.lighting`), written after ``radius``:
#: the Mahalanobis radius R (``radius`` = sigma * R). Isotropic runs do not write it, so their bytes are unchanged.
OPTIONAL_CERTIFY_KEYS = ("mahalanobis_radius",)
TSV_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
DECISION_MODES = ("fixed", "sequential")


def _incremental(value: Any, where: str) -> dict[str, Any]:
    """The ``incremental`` object of a certify row, every key of :data:`INCREMENTAL_KEYS` checked."""
    if not isinstance(value, Mapping) or set(value) != set(INCREMENTAL_KEYS):
        raise InputError(f"{where}: 'incremental' must be an object with the keys {', '.join(INCREMENTAL_KEYS)}")
    checked = {
        "from_sha256": digest_field(value["from_sha256"], "incremental.from_sha256", where),
        "original_model_sha256": digest_field(value["original_model_sha256"], "incremental.original_model_sha256", where),
        "original_p_lower": real_field(value["original_p_lower"], "incremental.original_p_lower", where, 0.0, 1.0),
        "original_alpha": real_field(value["original_alpha"], "incremental.original_alpha", where, 0.0, 1.0),
        "alpha_zeta": real_field(value["alpha_zeta"], "incremental.alpha_zeta", where, 0.0, 1.0),
        "noise_phase": integer_field(value["noise_phase"], "incremental.noise_phase", where, 0),
        "n_p": integer_field(value["n_p"], "incremental.n_p", where, 0),
        "disagreements": integer_field(value["disagreements"], "incremental.disagreements", where, 0),
        "zeta_upper": real_field(value["zeta_upper"], "incremental.zeta_upper", where, 0.0, 1.0),
    }
    if checked["disagreements"] > checked["n_p"]:
        raise InputError(f"{where}: incremental.disagreements {checked['disagreements']} exceeds n_p {checked['n_p']}")
    return checked


def _check_prediction(index: int, label: int, prediction: int, correct: bool, where: str) -> None:
    if prediction < ABSTAIN:
        raise InputError(f"{where}: prediction {prediction} is not {ABSTAIN} (abstain) or a class index")
    if correct != (prediction == label and prediction != ABSTAIN):
        raise InputError(f"{where}: 'correct' contradicts prediction {prediction} and label {label} of example {index}")


@dataclass(frozen=True)
class CertifyRecord:
    """CERTIFY's answer for one example: with probability >= 1 - alpha over the noise, the smoothed classifier
    returns ``prediction`` within L2 distance ``radius`` ([0,1]-pixel units) of the example."""

    index: int
    label: int
    prediction: int
    correct: bool
    radius: float
    n0: int
    n: int
    n_a: int
    p_lower: float
    alpha: float
    sigma: float
    seed: int
    seconds: float
    counts_selection: list[int]
    counts_estimation: list[int]
    model_sha256: str
    data_sha256: str
    incremental: dict[str, Any] | None = None
    #: lighting runs only: R with delta^T Sigma^-1 delta < R^2 certified (0.0 when abstaining); None: isotropic run
    mahalanobis_radius: float | None = None

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    @property
    def is_incremental(self) -> bool:
        return self.incremental is not None

    def certified_at(self, radius: float) -> bool:
        """The claim "correct with certified radius >= ``radius``" (inclusive, as in Cohen et al.)."""
        return self.correct and self.radius >= radius

    def to_dict(self) -> dict[str, Any]:
        row = {key: getattr(self, key) for key in CERTIFY_KEYS}
        if self.incremental is not None:
            row["incremental"] = {key: self.incremental[key] for key in INCREMENTAL_KEYS}
        if self.mahalanobis_radius is None:
            return row
        keys = list(row)
        keys.insert(keys.index("radius") + 1, "mahalanobis_radius")
        return {key: row[key] if key in row else self.mahalanobis_radius for key in keys}

    @classmethod
    def from_dict(cls, row: Any, where: str = "certify row") -> CertifyRecord:
        """Validate one row of the certify schema."""
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = [key for key in CERTIFY_KEYS if key not in row]
        if missing:
            raise InputError(f"{where}: missing key '{missing[0]}'; regenerate the rows with the certify stage")
        unknown = sorted(set(row) - set(CERTIFY_KEYS) - set(OPTIONAL_CERTIFY_KEYS) - {"incremental"})
        if unknown:
            raise InputError(f"{where}: unknown key '{unknown[0]}'; this is not a certify row")
        record = cls(
            index=integer_field(row["index"], "index", where, 0), label=integer_field(row["label"], "label", where, 0),
            prediction=integer_field(row["prediction"], "prediction", where), correct=flag_field(row["correct"], "correct", where),
            radius=real_field(row["radius"], "radius", where, 0.0), n0=integer_field(row["n0"], "n0", where, 1),
            n=integer_field(row["n"], "n", where, 1), n_a=integer_field(row["n_a"], "n_a", where, 0),
            p_lower=real_field(row["p_lower"], "p_lower", where, 0.0, 1.0), alpha=real_field(row["alpha"], "alpha", where, 0.0, 1.0),
            sigma=real_field(row["sigma"], "sigma", where, 0.0), seed=integer_field(row["seed"], "seed", where, 0),
            seconds=real_field(row["seconds"], "seconds", where, 0.0),
            counts_selection=counts_field(row["counts_selection"], "counts_selection", where),
            counts_estimation=counts_field(row["counts_estimation"], "counts_estimation", where),
            model_sha256=digest_field(row["model_sha256"], "model_sha256", where),
            data_sha256=digest_field(row["data_sha256"], "data_sha256", where),
            incremental=_incremental(row["incremental"], where) if "incremental" in row else None,
            mahalanobis_radius=(real_field(row["mahalanobis_radius"], "mahalanobis_radius", where, 0.0)
                                if "mahalanobis_radius" in row else None),
        )
        _check_prediction(record.index, record.label, record.prediction, record.correct, where)
        if record.mahalanobis_radius is not None and not math.isclose(
                record.radius, record.sigma * record.mahalanobis_radius, rel_tol=1e-9, abs_tol=1e-12):
            raise InputError(f"{where}: radius {record.radius} is not sigma {record.sigma} x mahalanobis_radius "
                             f"{record.mahalanobis_radius}; regenerate the certificates")
        if record.abstained and record.radius != 0.0:
            raise InputError(f"{where}: example {record.index} abstains but carries radius {record.radius}; regenerate the certificates")
        if record.n_a > record.n:
            raise InputError(f"{where}: n_a = {record.n_a} exceeds n = {record.n}")
        inc = record.incremental
        if inc is not None:
            if not math.isclose(record.alpha, inc["original_alpha"] + inc["alpha_zeta"], rel_tol=1e-12, abs_tol=1e-15):
                raise InputError(f"{where}: alpha {record.alpha} is not original_alpha + alpha_zeta of the incremental certificate")
            if not math.isclose(record.p_lower, max(0.0, inc["original_p_lower"] - inc["zeta_upper"]), rel_tol=1e-12, abs_tol=1e-15):
                raise InputError(f"{where}: p_lower {record.p_lower} is not original_p_lower - zeta_upper of the incremental certificate")
        return record


@dataclass(frozen=True)
class DecisionRecord:
    """"Certified at ``radius_threshold``?" for one example; ``details`` holds the mode's own fields
    (``certified_radius`` for mode fixed; looks, bounds, timing and counts for mode sequential)."""

    index: int
    label: int
    prediction: int
    certified: bool
    correct: bool
    evaluations: int
    radius_threshold: float
    alpha: float
    sigma: float
    n0: int
    n: int
    n_a: int
    seed: int
    mode: str
    model_sha256: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        return {**self.details, **data}

    @classmethod
    def from_dict(cls, row: Any, where: str = "decision row") -> DecisionRecord:
        """Validate one row of the decision schema (either mode)."""
        if not isinstance(row, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        names = [f.name for f in fields(cls) if f.name != "details"]
        missing = [key for key in names if key not in row]
        if missing:
            raise InputError(f"{where}: missing key '{missing[0]}'; rows must follow the decision schema (results/gate.jsonl)")
        if row["mode"] not in DECISION_MODES:
            raise InputError(f"{where}: mode {row['mode']!r} is not one of {', '.join(DECISION_MODES)}")
        if not isinstance(row["model_sha256"], str) or not row["model_sha256"]:
            raise InputError(f"{where}: 'model_sha256' must name the model the decision was made on")
        record = cls(
            index=integer_field(row["index"], "index", where, 0), label=integer_field(row["label"], "label", where, 0),
            prediction=integer_field(row["prediction"], "prediction", where),
            certified=flag_field(row["certified"], "certified", where), correct=flag_field(row["correct"], "correct", where),
            evaluations=integer_field(row["evaluations"], "evaluations", where, 0),
            radius_threshold=real_field(row["radius_threshold"], "radius_threshold", where, 0.0),
            alpha=real_field(row["alpha"], "alpha", where, 0.0, 1.0), sigma=real_field(row["sigma"], "sigma", where, 0.0),
            n0=integer_field(row["n0"], "n0", where, 0), n=integer_field(row["n"], "n", where, 0),
            n_a=integer_field(row["n_a"], "n_a", where, 0), seed=integer_field(row["seed"], "seed", where, 0),
            mode=str(row["mode"]), model_sha256=row["model_sha256"],
            details={key: value for key, value in row.items() if key not in names},
        )
        _check_prediction(record.index, record.label, record.prediction, record.correct, where)
        if record.certified and record.abstained:
            raise InputError(f"{where}: example {record.index} is certified but abstains; the decision rows are inconsistent")
        return record

    @classmethod
    def from_certify(cls, record: CertifyRecord, radius: float) -> DecisionRecord:
        """The decision at ``radius`` read off a fixed-n CERTIFY row: certified iff not abstaining and
        radius >= r*; evaluations = n0 + n; the model is the one the row names."""
        details: dict[str, Any] = {"certified_radius": record.radius}
        if record.mahalanobis_radius is not None:
            details["mahalanobis_radius"] = record.mahalanobis_radius
        return cls(
            index=record.index, label=record.label, prediction=record.prediction,
            certified=not record.abstained and record.radius >= radius, correct=record.correct,
            evaluations=record.n0 + record.n, radius_threshold=float(radius), alpha=record.alpha, sigma=record.sigma,
            n0=record.n0, n=record.n, n_a=record.n_a, seed=record.seed, mode="fixed", model_sha256=record.model_sha256,
            details=details,
        )


# --- reading -------------------------------------------------------------------------------------------------

def _json_rows(text: str, source: str) -> list[tuple[int, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: line {number} is not valid JSON ({exc.msg})") from None
    return rows


def _parse(data: bytes | str, source: str, kind: type[CertifyRecord] | type[DecisionRecord], empty: str) -> list[Any]:
    """Rows of ``kind`` from JSON-lines bytes or text: at least one, each valid, no example index twice."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    records = [kind.from_dict(row, f"{source} line {number}") for number, row in _json_rows(text, source)]
    if not records:
        raise InputError(f"{source}: {empty}")
    seen: set[int] = set()
    for record in records:
        if record.index in seen:
            raise InputError(f"{source}: example index {record.index} appears twice; merge shards without duplicates")
        seen.add(record.index)
    return records


def parse_certify_records(data: bytes | str, source: str = "results/certify.jsonl") -> list[CertifyRecord]:
    """Certify records from JSON-lines bytes or text (at least one, no index twice)."""
    return _parse(data, source, CertifyRecord, "no certification records; run the certify stage")


def read_certify_records(path: str | os.PathLike[str]) -> list[CertifyRecord]:
    """The records of a finished certification JSONL file."""
    return parse_certify_records(read_text(path, "certification results"), str(path))


def parse_decision_records(data: bytes | str, source: str = "results/gate.jsonl") -> list[DecisionRecord]:
    """Decision records from JSON-lines bytes or text (at least one, no index twice)."""
    return _parse(data, source, DecisionRecord, "no decision records; run the gate stage or smoothcert decide")


def read_result_rows(path: str | os.PathLike[str]) -> list[CertifyRecord] | list[DecisionRecord]:
    """Certify or decision records, told apart by the first row's keys (``radius``: certify)."""
    text = read_text(path, "results file")
    rows = _json_rows(text, str(path))
    if not rows:
        raise InputError(f"{path}: no certification records or decisions; run the certify or gate stage")
    if isinstance(rows[0][1], Mapping) and "radius" in rows[0][1]:
        return parse_certify_records(text, str(path))
    return parse_decision_records(text, str(path))


# --- writing -------------------------------------------------------------------------------------------------

def json_line(obj: Mapping[str, Any], sort_keys: bool = False) -> str:
    return json.dumps(obj, allow_nan=False, sort_keys=sort_keys) + "\n"


def certify_jsonl_text(records: Iterable[CertifyRecord]) -> str:
    """``results/certify.jsonl``: one object per record, keys in :data:`CERTIFY_KEYS` order."""
    return "".join(json_line(r.to_dict()) for r in records)


def certify_tsv_text(records: Iterable[CertifyRecord]) -> str:
    """Reference-style certify log: ``idx label predict radius correct time`` (radius at full precision)."""
    rows = [TSV_HEADER]
    for r in records:
        rows.append(f"{r.index}\t{r.label}\t{r.prediction}\t{r.radius!r}\t{int(r.correct)}\t{r.seconds:.4f}")
    return "\n".join(rows) + "\n"


def decision_jsonl_text(records: Iterable[DecisionRecord]) -> str:
    """``results/gate.jsonl``: one object per decision, keys sorted."""
    return "".join(json_line(r.to_dict(), sort_keys=True) for r in records)
