"""Cohen et al.'s certify logs: the reader, and the summary reproducing their published CIFAR-10 table."""
from __future__ import annotations

from pathlib import Path

import pytest

from certification.errors import InputError
from certification.cohen_log import IMPORTED_UNKNOWN, is_imported, parse_cohen_log, read_cohen_log
from certification.summary import summarize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cohen2019"
#: Cohen, Rosenfeld, Kolter (ICML 2019), CIFAR-10 ResNet-110 certified accuracy (tests/fixtures/cohen2019/SOURCE.md).
PUBLISHED = {
    "0.12": [0.59, 0.00, 0.00, 0.00, 0.00, 0.00],
    "0.25": [0.60, 0.43, 0.27, 0.00, 0.00, 0.00],
    "0.50": [0.55, 0.41, 0.32, 0.23, 0.15, 0.09],
    "1.00": [0.39, 0.34, 0.28, 0.22, 0.17, 0.14],
}
RADII = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


@pytest.mark.parametrize("sigma", sorted(PUBLISHED))
def test_summary_reproduces_the_published_table(sigma: str) -> None:
    records = read_cohen_log(FIXTURES / f"cifar10_resnet110_noise_{sigma}_sigma_{sigma}.tsv", float(sigma))
    summary = summarize(records, RADII, 0.95)
    assert summary["n_examples"] == 500
    for point, published in zip(summary["curve"], PUBLISHED[sigma]):
        assert round(point["certified_accuracy"], 2) == published, (sigma, point)  # the table has 2 digits
        assert point["lower_bound"] <= point["certified_accuracy"]
    assert all(is_imported(r) and r.data_sha256 == IMPORTED_UNKNOWN for r in records)


def test_reader_keeps_abstentions_and_parses_timedelta_times() -> None:
    text = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t3\t0.378\t1\t0:00:15.5\n20\t7\t-1\t0.0\t0\t15.6\n"
    first, second = parse_cohen_log(text, 0.25)
    assert first.correct and first.radius == 0.378 and first.seconds == pytest.approx(15.5)
    assert 0.5 < first.p_lower < 1.0
    assert second.abstained and not second.correct and second.p_lower == 0.0 and second.index == 20
    assert first.n == 100_000 and first.n0 == 100 and first.alpha == 0.001


@pytest.mark.parametrize("text, message", [
    ("index\tlabel\n0\t1\n", "first line"),
    ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t4\t0.5\t1\t1.0\n", "contradicts"),
    ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t-1\t0.5\t0\t1.0\n", "abstains"),
    ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t3\t0.5\n", "6 tab-separated"),
    ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n", "no rows"),
    ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t3\t0.5\t1\t1\n0\t3\t3\t0.5\t1\t1\n", "twice"),
])
def test_reader_refuses_malformed_logs(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_cohen_log(text, 0.25)


def test_our_own_tsv_log_reads_back_as_the_same_certificates() -> None:
    """certify's reference-style .tsv (certify_tsv_text) is a Cohen log: the reader returns the same claims."""
    from certification.records import certify_tsv_text

    records = read_cohen_log(FIXTURES / "cifar10_resnet110_noise_0.50_sigma_0.50.tsv", 0.5)
    again = parse_cohen_log(certify_tsv_text(records), 0.5)
    assert [(r.index, r.label, r.prediction, r.radius, r.correct) for r in again] == \
        [(r.index, r.label, r.prediction, r.radius, r.correct) for r in records]
