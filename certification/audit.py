"""Audit a signed dossier by re-running CERTIFY on a seeded sample of its attached per-example results.

``audit_dossier`` (the library side of ``smoothcert audit``):

1. verifies the dossier with :func:`certification.dossier.verify.verify_dossier` (signatures intact, valid,
   trusted, covering the file; attached evidence consistent with the document); any failed check fails the audit;
2. reads evidence.json and certify.jsonl attached to the *last signed revision* (they must equal the
   author-signed revision's, which ``verify`` checked) and checks that sha256(certify.jsonl) equals the
   evidence's ``hashes.certify_jsonl_sha256``;
3. checks that the model file hashes to ``hashes.model_sha256`` and the data file to ``hashes.splits.test``;
4. draws K of the attached records (numpy Generator seeded by SeedSequence([audit seed, tag]); K = 0: all),
   re-runs CERTIFY on exactly those test indices with the evidence's n0, n, alpha, sigma and seed (the noise of
   an example depends only on (seed, index, phase), so the same stream is drawn), and compares counts_selection,
   counts_estimation, n_a, prediction and radius.

Outcome per example: ``match`` (every compared value equal; radius bit for bit), ``within tolerance`` (same
prediction and same selected class, every count within ``count_tolerance`` of the record, and the recorded
radius is the one CERTIFY computes from the recorded n_a), or ``MISMATCH``.

Exit codes (:attr:`AuditReport.exit_code`):

- 0: every audited example matches exactly;
- 3: no exact match for some, but every difference is within tolerance AND the platform differs from the one
  recorded (onnxruntime provider and version, numpy version and its float32 log/cos/sin loops), which is
  how rounding may legitimately change a few counts;
- 1: anything else: a failed verification check, a hash that differs, a mismatch, or tolerance-only differences
  on the recorded platform (where counts must be reproduced exactly);
- 2: unusable input (missing file, not a PDF, no trust root, no attachments, unreadable evidence); raised
  as :class:`~certification.errors.InputError`.

The audit is only as strong as the sample: K examples out of N catch a doctored fraction f of records with
probability about 1 - (1 - f)^K.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from certification.errors import InputError
from certification.fileio import sha256_bytes, sha256_file
from certification.records import parse_certify_records

EXIT_OK = 0
EXIT_DIFFERENT = 1
EXIT_BAD_INPUT = 2
EXIT_TOLERANCE = 3
DEFAULT_EXAMPLES = 20
MATCH, WITHIN, MISMATCH = "match", "within tolerance", "MISMATCH"
_AUDIT_TAG = 0x41554454  # "AUDT": keeps the audit's sample apart from the certify subset and noise streams
#: The compared radius of a "within tolerance" record must equal CERTIFY's radius for its own n_a up to this.
RADIUS_CONSISTENCY = 1e-9
COMPARED = ("counts_selection", "counts_estimation", "n_a", "prediction", "radius")


def count_tolerance(samples: int) -> int:
    """Largest per-class count difference accepted as platform rounding for ``samples`` draws:
    max(3, ceil(1e-3 * samples)) (e.g. 10 for n = 10000, 3 for n0 = 100)."""
    return max(3, math.ceil(1e-3 * int(samples)))


# ----------------------------------------------------------------------------------------------------------
# What the audit reads of the dossier's attachments.

@dataclass(frozen=True)
class AuditedEvidence:
    """What the audit needs from evidence.json."""

    model_sha256: str
    test_sha256: str
    certify_jsonl_sha256: str
    n0: int
    n: int
    alpha: float
    sigma: float
    seed: int
    batch_size: int
    platform: dict[str, Any]
    development_key: bool
    #: a lighting run's (directions, tau) from certify.noise.covariance; ("none", 0.0) for isotropic runs
    lighting: tuple[str, float] = ("none", 0.0)


def read_evidence(data: bytes) -> AuditedEvidence:
    """Parse evidence.json bytes (schema smoothcert-dossier-evidence/1); InputError naming a missing key."""
    try:
        ev = json.loads(data)
        params = ev["certify"]["params"]
        hashes = ev["hashes"]
        certify = ev["certify"]
        return AuditedEvidence(
            model_sha256=str(hashes["model_sha256"]), test_sha256=str(hashes["splits"]["test"]),
            certify_jsonl_sha256=str(hashes["certify_jsonl_sha256"]), n0=int(params["n0"]), n=int(params["n"]),
            alpha=float(params["alpha"]), sigma=float(params["sigma"]), seed=int(params["seed"]),
            batch_size=int(params.get("batch_size") or 250),
            platform=platform_of(certify.get("runtime"), (certify.get("noise") or {}).get("kernels")),
            development_key=bool((ev.get("signing") or {}).get("development_key")),
            lighting=_lighting_of((certify.get("noise") or {}).get("covariance")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"attached evidence.json is not valid JSON ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"attached evidence.json lacks {exc} (hashes or certify.params); not a smoothcert dossier") from None


def _lighting_of(covariance: Any) -> tuple[str, float]:
    """(directions, tau) of a recorded lighting covariance; isotropic when none is recorded."""
    if covariance is None:
        return ("none", 0.0)
    return (str(covariance["directions"]), float(covariance["tau"]))


def parse_records(data: bytes) -> dict[int, dict[str, Any]]:
    """Records of certify.jsonl bytes by test index, read by the one certify-record reader
    (:func:`certification.records.parse_certify_records`: every row validated, no index twice)."""
    records = parse_certify_records(data, "attached certify.jsonl")
    if any(r.is_incremental for r in records):
        raise InputError("attached certify.jsonl holds incremental certificates; audit re-runs full CERTIFY only: audit the "
                         "original model's dossier and re-run the incremental certification from its file")
    return {r.index: r.to_dict() for r in records}

# ----------------------------------------------------------------------------------------------------------


def platform_of(runtime: Any, kernels: Any) -> dict[str, Any]:
    """The facts that decide whether counts are reproduced bit for bit: onnxruntime provider and version,
    numpy version and its float32 log/cos/sin loops (thread counts and batch size do not matter)."""
    runtime = runtime if isinstance(runtime, dict) else {}
    kernels = kernels if isinstance(kernels, dict) else {}
    return {"provider": runtime.get("provider"), "onnxruntime_version": runtime.get("onnxruntime_version"),
            **{f"numpy_{k}": kernels.get(k) for k in ("numpy", "log", "cos", "sin")}}


@dataclass(frozen=True)
class ExampleAudit:
    """One audited example: the recorded and recomputed values and the outcome."""

    index: int
    recorded: dict[str, Any]
    recomputed: dict[str, Any]
    outcome: str
    detail: str

    def row(self) -> str:
        def cell(value: Any, width: int, spec: str = "") -> str:
            try:
                return format(value, f">{width}{spec}")
            except (TypeError, ValueError):  # a doctored record may hold anything
                return format(repr(value)[:width], f">{width}")

        r, c = self.recorded, self.recomputed
        return (f"{self.index:>6}  {cell(r['prediction'], 4)} {cell(c['prediction'], 4)}  {cell(r['n_a'], 8)} "
                f"{cell(c['n_a'], 8)}  {cell(r['radius'], 9, '.5f')} {cell(c['radius'], 9, '.5f')}  "
                f"{self.outcome}{'  ' + self.detail if self.detail else ''}")


@dataclass
class AuditReport:
    """The audit's findings. ``exit_code`` follows the module docstring."""

    pdf: Path
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    examples: list[ExampleAudit] = field(default_factory=list)
    records_total: int = 0
    platform_recorded: dict[str, Any] = field(default_factory=dict)
    platform_current: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def platform_matches(self) -> bool:
        return (all(v is not None and v != "unknown" for v in self.platform_recorded.values())
                and self.platform_recorded == self.platform_current)

    def counts(self) -> dict[str, int]:
        return {o: sum(e.outcome == o for e in self.examples) for o in (MATCH, WITHIN, MISMATCH)}

    @property
    def exit_code(self) -> int:
        counts = self.counts()
        if self.failures or counts[MISMATCH] or not self.examples:
            return EXIT_DIFFERENT
        if counts[WITHIN]:
            return EXIT_DIFFERENT if self.platform_matches else EXIT_TOLERANCE
        return EXIT_OK

    def status_line(self) -> str:
        c, k = self.counts(), len(self.examples)
        where = "on a matching platform" if self.platform_matches else "on a different platform (" + ", ".join(
            f"{key} {self.platform_recorded.get(key)} -> {self.platform_current.get(key)}"
            for key in self.platform_current if self.platform_recorded.get(key) != self.platform_current.get(key)) + ")"
        code = self.exit_code
        if self.failures:
            return f"AUDIT FAILED: {len(self.failures)} check(s) failed before the re-run"
        if code == EXIT_OK:
            return f"AUDIT PASSED: {k} of {self.records_total} examples re-certified, all match exactly {where}"
        if code == EXIT_TOLERANCE:
            return (f"AUDIT PASSED WITHIN TOLERANCE: {c[MATCH]} exact, {c[WITHIN]} within tolerance of {k} "
                    f"re-certified examples {where}")
        return (f"AUDIT FAILED: {c[MISMATCH]} mismatch(es), {c[WITHIN]} within tolerance, {c[MATCH]} exact of {k} "
                f"re-certified examples {where}")

    def to_dict(self) -> dict[str, Any]:
        return {"pdf": str(self.pdf), "exit_code": self.exit_code, "status": self.status_line(), "notes": self.notes,
                "failures": self.failures, "records_total": self.records_total,
                "platform_recorded": self.platform_recorded, "platform_current": self.platform_current,
                "platform_matches": self.platform_matches, "seconds": self.seconds,
                "examples": [asdict(e) for e in self.examples]}


def audit_sample(indices: Sequence[int], examples: int, seed: int) -> np.ndarray:
    """Sorted test indices to re-certify: all when ``examples`` is 0 or >= len(indices), else a uniform sample
    without replacement from numpy Generator(PCG64(SeedSequence([seed, tag])))."""
    if isinstance(examples, bool) or not isinstance(examples, (int, np.integer)) or examples < 0:
        raise InputError(f"--examples must be 0 (all) or a positive integer, got {examples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed!r}")
    pool = np.sort(np.asarray(list(indices), dtype=np.int64))
    if examples == 0 or examples >= len(pool):
        return pool
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _AUDIT_TAG])))
    return np.sort(rng.choice(pool, size=int(examples), replace=False))


def compare(index: int, recorded: dict[str, Any], recomputed: dict[str, Any], ev: AuditedEvidence) -> ExampleAudit:
    """Classify one example as match / within tolerance / MISMATCH (see the module docstring)."""
    from certification.smoothing import SmoothedClassifier
    from scipy.stats import norm

    problems = []
    for key, expected in (("n0", ev.n0), ("n", ev.n), ("alpha", ev.alpha), ("sigma", ev.sigma), ("seed", ev.seed)):
        if key in recorded and recorded[key] != expected:
            problems.append(f"record {key} {recorded[key]} != evidence {expected}")
    if "label" in recorded and recorded["label"] != recomputed["label"]:
        problems.append(f"label {recorded['label']} != data {recomputed['label']}")
    if not problems and all(recorded[k] == recomputed[k] for k in COMPARED):
        return ExampleAudit(index, recorded, recomputed, MATCH, "")
    diffs = [k for k in COMPARED if recorded[k] != recomputed[k]]
    detail = "; ".join(problems + [f"{k} differs" for k in diffs])
    try:
        sel_r, sel_c = np.asarray(recorded["counts_selection"]), np.asarray(recomputed["counts_selection"])
        est_r, est_c = np.asarray(recorded["counts_estimation"]), np.asarray(recomputed["counts_estimation"])
        shapes_ok = sel_r.shape == sel_c.shape and est_r.shape == est_c.shape
        close = (shapes_ok and not problems and recorded["prediction"] == recomputed["prediction"]
                 and int(np.argmax(sel_r)) == int(np.argmax(sel_c))
                 and int(np.abs(sel_r - sel_c).max()) <= count_tolerance(ev.n0)
                 and int(np.abs(est_r - est_c).max()) <= count_tolerance(ev.n)
                 and abs(int(recorded["n_a"]) - int(recomputed["n_a"])) <= count_tolerance(ev.n)
                 and int(recorded["n_a"]) == int(est_r[int(np.argmax(sel_r))]))
        if close:  # the recorded radius must be CERTIFY's for the recorded n_a
            p_lower = SmoothedClassifier.lower_confidence_bound(int(recorded["n_a"]), ev.n, ev.alpha)
            radius = 0.0 if p_lower < 0.5 else ev.sigma * float(norm.ppf(p_lower))
            close = abs(float(recorded["radius"]) - radius) <= RADIUS_CONSISTENCY
            if not close:
                detail += f"; recorded radius is not CERTIFY's radius {radius:.6f} for the recorded n_a"
    except (TypeError, ValueError):
        close = False
    return ExampleAudit(index, recorded, recomputed, WITHIN if close else MISMATCH, detail)


def _signed_attachments(pdf: Path) -> tuple[dict[str, bytes], bool]:
    """Attachments of the last signed revision, and whether they equal the author-signed (first) revision's."""
    from certification.dossier.attachments import read_pdf_content
    from certification.signing.verify import open_signed_pdf, signed_revision

    data, reader = open_signed_pdf(pdf)
    try:
        signatures = reader.embedded_signatures
        if not signatures:
            raise InputError(f"{pdf}: the PDF carries no signature")
        last = read_pdf_content(signed_revision(data, signatures[-1])).attachments
        return last, last == read_pdf_content(signed_revision(data, signatures[0])).attachments
    except InputError:
        raise
    except Exception as exc:  # a verified file should parse; anything else is unusable input
        raise InputError(f"{pdf}: cannot read the attachments of the last signed revision ({type(exc).__name__})") from None


def audit_dossier(pdf: str | os.PathLike[str], model: str | os.PathLike[str], data: str | os.PathLike[str], *,
                  examples: int = DEFAULT_EXAMPLES, seed: int = 0, threads: int | None = None,
                  trust_root: str | os.PathLike[str] | None = None,
                  dev_pki_dir: str | os.PathLike[str] | None = None) -> AuditReport:
    """Audit ``pdf`` against the model and test-split files (steps in the module docstring).

    Bad input raises InputError; every finding (failed check, hash difference, mismatch) is in the report.
    Re-certification runs only when verification and every hash hold. Nothing is written.
    """
    import time

    from certification.dossier.verify import verify_dossier

    pdf, model, data = Path(pdf), Path(model), Path(data)
    for path, what in ((pdf, "dossier"), (model, "model file"), (data, "data file")):
        if not path.is_file():
            raise InputError(f"{path}: {what} not found")
    if not pdf.read_bytes()[:5] == b"%PDF-":
        raise InputError(f"{pdf}: not a PDF file")
    audit_sample([], examples, seed)  # checks --examples and --seed before any work
    start = time.perf_counter()
    kwargs = {} if dev_pki_dir is None else {"dev_pki_dir": dev_pki_dir}
    verification = verify_dossier(pdf, trust_root=trust_root, **kwargs)
    report = AuditReport(pdf=pdf)
    report.notes.append(verification.trust_root_note)
    report.failures += [f"verification: {c.line()}" for c in verification.failed()]
    if not verification.ok:
        report.seconds = time.perf_counter() - start
        return report
    report.notes.append(f"signatures and evidence verified ({len(verification.checks)} checks)")
    attachments, same_as_author = _signed_attachments(pdf)
    if not same_as_author:
        report.failures.append("the attachments of the last signed revision differ from the author-signed revision's")
    from certification.dossier.attachments import EVIDENCE_ATTACHMENT, RECORDS_ATTACHMENT

    missing = [name for name in (EVIDENCE_ATTACHMENT, RECORDS_ATTACHMENT) if name not in attachments]
    if missing:
        raise InputError(f"{pdf}: the last signed revision has no attached {', '.join(missing)}")
    ev = read_evidence(attachments[EVIDENCE_ATTACHMENT])
    if ev.development_key:
        report.notes.append("the dossier is signed with the DEVELOPMENT KEY: fine for an audit of the numbers, "
                            "NOT a submission signature")
    records_bytes = attachments[RECORDS_ATTACHMENT]
    records = parse_records(records_bytes)
    report.records_total = len(records)
    report.platform_recorded = ev.platform
    digest = sha256_bytes(records_bytes)
    if digest != ev.certify_jsonl_sha256:
        report.failures.append(f"attached certify.jsonl hashes to {digest}, the evidence says {ev.certify_jsonl_sha256}")
    for path, expected, what in ((model, ev.model_sha256, "certified model"), (data, ev.test_sha256, "test split")):
        actual = sha256_file(path)
        if actual != expected:
            report.failures.append(f"{path}: sha256 {actual} differs from the {what}'s {expected}")
    if report.failures:
        report.seconds = time.perf_counter() - start
        return report
    chosen = audit_sample(records.keys(), examples, seed)
    report.examples, report.platform_current = _recertify(model, data, chosen, records, ev, threads)
    report.seconds = time.perf_counter() - start
    return report


def _recertify(model: Path, data: Path, chosen: np.ndarray, records: dict[int, dict[str, Any]], ev: AuditedEvidence,
               threads: int | None) -> tuple[list[ExampleAudit], dict[str, Any]]:
    """CERTIFY exactly the test indices ``chosen`` with the evidence's parameters; compare with the records."""
    from certification.certify_run import CHUNK_EXAMPLES, RunOptions, open_run
    from certification.noise_sampling import noise_kernels

    options = RunOptions(sigma=ev.sigma, alpha=ev.alpha, seed=ev.seed, batch_size=max(1, ev.batch_size), threads=threads,
                         lighting_directions=ev.lighting[0], lighting_tau=ev.lighting[1])
    classifier, split, _ = open_run(model, data, options)
    outside = [int(i) for i in chosen if not 0 <= int(i) < len(split)]
    if outside:
        raise InputError(f"{data}: has {len(split)} examples, but the dossier certifies index {outside[0]}")
    platform = platform_of(classifier.base_classifier.session_config, noise_kernels())
    audited = []
    for start in range(0, len(chosen), CHUNK_EXAMPLES):
        part = chosen[start:start + CHUNK_EXAMPLES]
        for result in classifier.iter_certify(split.model_input(part), split.labels[part], ev.n0, ev.n, ev.alpha,
                                              ev.seed, indices=part):
            recomputed = {"label": result.label, "prediction": result.prediction, "n_a": result.n_a,
                          "radius": result.radius, "counts_selection": result.counts_selection,
                          "counts_estimation": result.counts_estimation}
            audited.append(compare(result.index, records[result.index], recomputed, ev))
    return audited, platform
