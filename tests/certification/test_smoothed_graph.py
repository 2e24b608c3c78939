"""The smoothed predictor graph (models/smoothed.onnx) against the analytic linear oracle and the library's PREDICT.

On the linear oracle P(f(x + e) = 1) = Phi(margin / sigma), so the graph's counts over k copies are Binomial(k, p):
the tests check the mean and the dispersion of the counts of fresh calls (independent noise across copies and
calls), the agreement of graph + rule with the library's PREDICT against the agreement the analytic answer
probabilities predict, and the README's reference implementation. Tolerances are at a false-alarm level of 1e-6.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from scipy.stats import binom, binomtest, chi2, norm

from certification.errors import InputError
from certification.smoothed_graph import build_smoothed_graph, read_smoothed_metadata
from certification.smoothing import SmoothedClassifier, predict_from_counts
from support.oracle import conv_onnx, linear_onnx, points_at_margins

CHW = (3, 8, 8)
SIGMA, K, ALPHA = 0.25, 100, 0.001
TEST_LEVEL = 1e-6
README = Path(__file__).resolve().parents[2] / "README.md"


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("smoothed")
    rng = np.random.default_rng(5)
    w = rng.choice([-1.0, 1.0], size=CHW) * rng.uniform(0.8, 1.2, size=CHW)
    base = linear_onnx(folder / "linear.onnx", w, -float(w.sum()) * 0.5, CHW)  # boundary through the grey image
    return folder, base, w, -float(w.sum()) * 0.5


def _images(w: np.ndarray, b: float, margins: np.ndarray) -> np.ndarray:
    return points_at_margins(w, b, np.full(CHW, 0.5), margins)


def test_counts_are_binomial_with_fresh_noise_every_call(oracle) -> None:
    folder, base, w, b = oracle
    graph = build_smoothed_graph(base, folder / "unseeded.onnx", K, SIGMA, ALPHA)
    assert read_smoothed_metadata(graph.path) == (K, SIGMA, ALPHA)
    assert "seed" not in {a.name for n in onnx.load(str(graph.path)).graph.node for a in n.attribute}
    session, calls = _session(graph.path), 40
    x = _images(w, b, np.array([0.5 * SIGMA]))  # p = Phi(0.5) = 0.69
    p = float(norm.cdf(0.5))
    counts = np.array([session.run(None, {"image": x})[0] for _ in range(calls)])
    assert counts.shape == (calls, 2) and counts.dtype == np.int64 and (counts.sum(axis=1) == K).all()
    ones = counts[:, 1]
    assert binomtest(int(ones.sum()), K * calls, p).pvalue > TEST_LEVEL  # the noise has sigma (not sigma^2, not 1)
    dispersion = float(((ones - K * p) ** 2).sum() / (K * p * (1 - p)))  # chi2(calls) for independent copies
    assert chi2.ppf(TEST_LEVEL / 2, calls) < dispersion < chi2.ppf(1 - TEST_LEVEL / 2, calls)
    assert len(set(ones.tolist())) > 1  # every call draws fresh noise
    # the hazard the README names: without a seed, every session of one process starts the same sequence
    assert _session(graph.path).run(None, {"image": x})[0].tolist() == counts[0].tolist()


def test_graph_and_rule_agree_with_library_predict(oracle) -> None:
    folder, base, w, b = oracle
    graph = build_smoothed_graph(base, folder / "seeded.onnx", K, SIGMA, ALPHA, seed=12)
    rng = np.random.default_rng(3)
    count = 200
    t = rng.uniform(0.5, 3.0, count) * rng.choice([-1.0, 1.0], count)  # margins in sigma units, both classes
    images = _images(w, b, t * SIGMA)
    session = _session(graph.path)
    device = [predict_from_counts(session.run(None, {"image": x[None]})[0], ALPHA) for x in images]
    library = SmoothedClassifier.from_onnx(base, SIGMA, batch_size=K, threads=1, provider="cpu").predict_many(
        images, K, ALPHA, seed=4)
    agreement = float(np.mean(np.array(device) == np.array(library)))
    # analytic answer probabilities of PREDICT at (K, ALPHA): class 1 iff count >= c, class 0 iff count <= K - c
    c = min(m for m in range(K // 2, K + 1) if binomtest(m, K, 0.5).pvalue <= ALPHA)
    p = norm.cdf(t)
    one, zero = binom.sf(c - 1, K, p), binom.cdf(K - c, K, p)
    same = one ** 2 + zero ** 2 + (1 - one - zero) ** 2  # two independent PREDICTs give the same answer
    disagreements = int(round((1 - agreement) * count))
    # far more disagreements than two independent PREDICTs make (about 2.2 here; the bound is a Poisson tail near
    # 1e-6) would reveal a wrong rule or wrong noise (graph noise at sigma 0.35 instead of 0.25 makes 15)
    expected = float((1 - same).sum())
    assert disagreements <= expected + 5 * np.sqrt(expected) + 2, (disagreements, expected)
    assert agreement >= 0.97
    wrong = sum(1 for a, m in zip(device, t) if a not in (-1, int(m > 0)))
    assert wrong <= binom.ppf(1 - TEST_LEVEL, count, ALPHA)  # PREDICT's guarantee, for the graph's answers


def test_seeded_graph_repeats_across_sessions_and_multiclass_counts(oracle, tmp_path: Path) -> None:
    folder, base, w, b = oracle
    seeded = build_smoothed_graph(base, tmp_path / "s.onnx", 50, SIGMA, ALPHA, seed=1)
    x = _images(w, b, np.array([0.0]))
    first = [_session(seeded.path).run(None, {"image": x})[0].tolist() for _ in range(2)]
    assert first[0] == first[1]  # a seed attribute makes every new session start the same sequence
    conv = conv_onnx(tmp_path / "conv.onnx", CHW, num_classes=4)
    tiny = build_smoothed_graph(conv, tmp_path / "tiny.onnx", 7, 1e-7, ALPHA)
    image = np.random.default_rng(0).random((1, *CHW), dtype=np.float32)
    clean = int(np.argmax(_session(conv).run(None, {"input": image})[0][0]))
    counts = _session(tiny.path).run(None, {"image": image})[0]
    assert counts.tolist() == [7 if c == clean else 0 for c in range(4)]


def _two_input_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["logits"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("case", ["not_onnx", "two_inputs", "k0", "k_float", "alpha"])
def test_bad_input_is_one_line_and_writes_nothing(oracle, tmp_path: Path, case: str) -> None:
    _, base, _, _ = oracle
    source, k, alpha = base, K, ALPHA
    if case == "not_onnx":
        source = tmp_path / "model.onnx"
        source.write_bytes(b"PK\x03\x04 not a model")
    elif case == "two_inputs":
        source = _two_input_model(tmp_path / "two.onnx")
    elif case == "k0":
        k = 0
    elif case == "k_float":
        k = 2.5
    else:
        alpha = 0.7
    out = tmp_path / "out" / "smoothed.onnx"
    with pytest.raises(InputError) as err:
        build_smoothed_graph(source, out, k, SIGMA, alpha)
    assert "\n" not in str(err.value)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def _readme_block(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match, f"README.md lost its {marker} code block"
    return match.group(1)


def test_readme_device_predict_reference(oracle) -> None:
    folder, base, w, b = oracle
    graph = build_smoothed_graph(base, folder / "readme.onnx", K, SIGMA, ALPHA, seed=3)
    namespace: dict = {}
    exec(compile(_readme_block("device-predict"), "README.md:device-predict", "exec"), namespace)  # noqa: S102
    session = namespace["open_predictor"](str(graph.path))
    far = _images(w, b, np.array([3 * SIGMA, -3 * SIGMA, 0.0]))
    answers = [namespace["device_predict"](session, x) for x in far]
    assert answers[:2] == [1, 0] and answers[2] == -1  # far from the boundary: its class; on it: abstain
