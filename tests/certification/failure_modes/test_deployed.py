"""The deployed procedure's measurement: the library's PREDICT at the device's n and alpha, on a real ONNX model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from certification.errors import InputError
from certification.failure_modes.deployed import measure_deployed_predict
from certification.records import ABSTAIN
from certification.smoothing import SmoothedClassifier
from support.dossier_outputs import SIZE, write_onnx


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> SmoothedClassifier:
    path = Path(tmp_path_factory.mktemp("deployed")) / "model.onnx"
    write_onnx(path)
    return SmoothedClassifier.from_onnx(path, 0.25, batch_size=100, threads=1, provider="cpu")


def test_measurement_is_predict_with_its_abstentions_bounds_and_latency(classifier: SmoothedClassifier) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((24, 3, SIZE, SIZE), dtype=np.float32)
    indices = list(range(100, 124))
    certify = [0] * 24
    m = measure_deployed_predict(classifier, images, indices, certify, 150, 0.01, 7, 0.95, 4)
    assert m.predictions == classifier.predict_many(images, 150, 0.01, 7, indices=indices)  # the library's PREDICT, same noise
    abstained = sum(p == ABSTAIN for p in m.predictions)
    ab = m.abstention_rate
    assert (ab["successes"], ab["trials"]) == (abstained, 24) and ab["lower"] <= ab["estimate"] <= ab["upper"]
    assert m.agreement_with_certify == pytest.approx(np.mean(np.array(m.predictions) == 0))
    assert m.latency.repeats == 4 and 0 < m.latency.min_s <= m.latency.median_s <= m.latency.p95_s <= m.latency.max_s
    assert m.platform["machine"] and "predictions" not in m.to_dict()
    tight = measure_deployed_predict(classifier, images, indices, certify, 150, 0.3, 7, 0.95, 1)
    assert sum(p == ABSTAIN for p in tight.predictions) <= abstained  # a looser test level abstains no more often


@pytest.mark.parametrize("n, alpha, count", [(0, 0.01, 3), (10, 0.5, 3), (10, 0.01, 0)])
def test_bad_settings_are_one_line_errors(classifier: SmoothedClassifier, n: int, alpha: float, count: int) -> None:
    images = np.zeros((count, 3, SIZE, SIZE), np.float32)
    with pytest.raises(InputError):
        measure_deployed_predict(classifier, images, list(range(count)), [0] * count, n, alpha, 1, 0.95, 1)
