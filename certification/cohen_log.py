"""Certification logs of Cohen et al.'s reference code (``code/certify.py``) imported as certify records.

The log (``idx label predict radius correct time``, the TSV that :func:`certification.records.certify_tsv_text`
also writes) names neither the model, the data nor the counts: imported rows are :class:`CertifyRecord` objects
validated like JSONL rows, marked by :data:`IMPORTED_UNKNOWN` (see :func:`is_imported`), so that summaries, the gate
and the external dossier can say what such evidence does not hold.
"""
from __future__ import annotations

import os
from typing import Any

from certification.errors import InputError
from certification.record_fields import read_text, real_field
from certification.records import ABSTAIN, TSV_HEADER, CertifyRecord, DecisionRecord

#: ``model_sha256`` / ``data_sha256`` of rows imported from a log that does not name its model or data.
IMPORTED_UNKNOWN = "imported:unknown"
#: Cohen et al.'s ``code/certify.py`` defaults (``--N0 100 --N 100000 --alpha 0.001``), used by their published logs.
COHEN_DEFAULTS = {"n0": 100, "n": 100_000, "alpha": 0.001}


def is_imported(record: CertifyRecord | DecisionRecord) -> bool:
    """True for rows imported from an external log: their model (and data) are not identified by a hash."""
    return record.model_sha256 == IMPORTED_UNKNOWN


def _seconds(text: str, where: str) -> float:
    """``15.4`` or ``datetime.timedelta`` text ``0:00:15.412345`` as seconds."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise InputError(f"{where}: time {text!r} is neither seconds nor H:MM:SS") from None
    value = 0.0
    for part in parts:
        value = value * 60.0 + part
    return real_field(value, "time", where, 0.0)


def parse_cohen_log(data: bytes | str, sigma: float, source: str = "certify log", alpha: float = COHEN_DEFAULTS["alpha"],
                    n0: int = COHEN_DEFAULTS["n0"], n: int = COHEN_DEFAULTS["n"]) -> list[CertifyRecord]:
    """Certify records from a log of Cohen et al.'s reference code (``code/certify.py``): a header line
    ``idx label predict radius correct time``, then one tab-separated row per example, ``predict`` -1 = abstain.

    The log does not record sigma, alpha, n0 or n (pass the values the run used; the defaults are the reference
    code's), nor the counts or the model and data: imported rows carry ``model_sha256 = data_sha256 =``
    :data:`IMPORTED_UNKNOWN` (see :func:`is_imported`), ``n_a = 0``, empty count lists, seed 0, and
    ``p_lower = Phi(radius / sigma)`` for a certified row (0 for an abstention), which is the bound the radius was
    computed from (up to the log's 3-digit rounding of the radius). Every row is validated like a JSONL row."""
    from scipy.stats import norm

    text = data.decode("utf-8") if isinstance(data, bytes) else data
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines or lines[0][1].split() != TSV_HEADER.split("\t"):
        raise InputError(f"{source}: not a certify log of Cohen et al.'s code (first line must be '{TSV_HEADER.expandtabs(1)}')")
    sigma = real_field(sigma, "sigma", source, 0.0)
    if sigma <= 0.0:
        raise InputError(f"{source}: sigma must be positive to import a certify log, got {sigma}")
    records, seen = [], set()
    for number, line in lines[1:]:
        where = f"{source} line {number}"
        fields_ = line.split("\t")
        if len(fields_) != 6:
            raise InputError(f"{where}: expected 6 tab-separated fields (idx label predict radius correct time), got {len(fields_)}")
        try:
            index, label, prediction, correct = (int(fields_[k]) for k in (0, 1, 2, 4))
            radius = float(fields_[3])
        except ValueError:
            raise InputError(f"{where}: idx, label, predict and correct must be integers and radius a number") from None
        if correct not in (0, 1):
            raise InputError(f"{where}: 'correct' must be 0 or 1, got {correct}")
        abstained = prediction == ABSTAIN
        record = CertifyRecord.from_dict({
            "index": index, "label": label, "prediction": prediction, "correct": bool(correct), "radius": radius,
            "n0": n0, "n": n, "n_a": 0, "p_lower": 0.0 if abstained else float(norm.cdf(radius / sigma)),
            "alpha": alpha, "sigma": sigma, "seed": 0, "seconds": _seconds(fields_[5].strip(), where),
            "counts_selection": [], "counts_estimation": [], "model_sha256": IMPORTED_UNKNOWN,
            "data_sha256": IMPORTED_UNKNOWN}, where)
        if record.index in seen:
            raise InputError(f"{source}: example index {record.index} appears twice")
        seen.add(record.index)
        records.append(record)
    if not records:
        raise InputError(f"{source}: the log has a header but no rows")
    return records


def looks_like_cohen_log(path: str | os.PathLike[str]) -> bool:
    """True when the file's first line is the reference code's certify header."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().split() == TSV_HEADER.split("\t")
    except (OSError, UnicodeDecodeError):
        return False


def read_cohen_log(path: str | os.PathLike[str], sigma: float, **options: Any) -> list[CertifyRecord]:
    """:func:`parse_cohen_log` of a file."""
    return parse_cohen_log(read_text(path, "certify log"), sigma, str(path), **options)
