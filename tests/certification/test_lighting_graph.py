"""The smoothed predictor graph with a lighting covariance (issue 19) against the analytic truth and the library.

The graph's in-graph noise (read from its ``noisy`` value by a real onnxruntime session) has covariance
Sigma = sigma^2 I + tau_norm^2 V^T V: its variance along each lighting direction is sigma^2 + tau_norm^2, along the
rest of the space sigma^2, and the directions are uncorrelated (chi-square and correlation bounds at a false-alarm
level of 1e-6). On a linear classifier whose normal w_hat lies half in the lighting subspace, P(f(x + e) = 1) =
Phi(m / s) with s^2 = w_hat^T Sigma w_hat: the graph's counts follow it (not the isotropic Phi(m / sigma)) and
graph + PREDICT rule agrees with the library's PREDICT under the same covariance as two independent PREDICTs do.
Bad input (a covariance of another sigma or image shape, a broken record) is one line and writes nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from scipy.stats import binom, binomtest, chi2, norm

from certification.errors import InputError
from certification.lighting import LightingCovariance, smoothing_covariance
from certification.smoothed_graph import build_smoothed_graph, read_smoothed_lighting, read_smoothed_metadata
from certification.smoothing import SmoothedClassifier, predict_from_counts
from support.oracle import linear_onnx, points_at_margins

CHW = (3, 8, 8)
SIGMA, TAU, K, ALPHA = 0.25, 0.05, 100, 0.001
TEST_LEVEL = 1e-6


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _half_lighting_normal(covariance: LightingCovariance) -> np.ndarray:
    """A unit w_hat = (brightness direction + a random direction orthogonal to the lighting subspace) / sqrt(2)."""
    rng = np.random.default_rng(11)
    u = rng.normal(size=covariance.d)
    u -= covariance.basis.T @ (covariance.basis @ u)
    w = np.ones(covariance.d) / np.sqrt(covariance.d) + u / np.linalg.norm(u)
    return (w / np.linalg.norm(w)).reshape(CHW)


@pytest.fixture(scope="module")
def lit(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("lit")
    covariance = LightingCovariance.build("dc+ramps", TAU, SIGMA, CHW)
    w = _half_lighting_normal(covariance)
    b = -float(w.sum()) * 0.5  # boundary through the grey image
    base = linear_onnx(folder / "linear.onnx", w, b, CHW)
    s = float(np.sqrt(SIGMA**2 + covariance.tau_norm**2 * np.sum((covariance.basis @ w.reshape(-1)) ** 2)))
    return folder, base, w, b, covariance, s


def _exposed_noise(graph: Path, out: Path) -> Path:
    """The graph with its noisy copies ``noisy`` [k, C, H, W] as a second output (the noise is noisy - image)."""
    model = onnx.load(str(graph))
    model.graph.output.append(helper.make_tensor_value_info("noisy", TensorProto.FLOAT, [K, *CHW]))
    onnx.save(model, str(out))
    return out


def test_in_graph_noise_has_the_lighting_covariance(lit) -> None:
    folder, base, _, _, covariance, _ = lit
    graph = build_smoothed_graph(base, folder / "lit.onnx", K, SIGMA, ALPHA, lighting=covariance)
    assert read_smoothed_metadata(graph.path) == (K, SIGMA, ALPHA)
    assert read_smoothed_lighting(graph.path) == covariance and "lighting" in graph.metadata
    session = _session(_exposed_noise(graph.path, folder / "exposed.onnx"))
    x = np.full((1, *CHW), 0.5, dtype=np.float32)
    noise = np.concatenate([session.run(None, {"image": x})[1] - x for _ in range(30)]).reshape(-1, covariance.d)
    samples = len(noise)
    along = noise.astype(np.float64) @ covariance.basis.T  # (N, K) coordinates along the lighting directions
    lo, hi = chi2.ppf(TEST_LEVEL / 2, samples), chi2.ppf(1 - TEST_LEVEL / 2, samples)
    lit_var = SIGMA**2 + covariance.tau_norm**2
    for column in along.T:  # mean zero is known: sum of squares / variance ~ chi2(N)
        assert lo < float(column @ column) / lit_var < hi
    rest = noise - along @ covariance.basis
    dof = samples * (covariance.d - covariance.k)
    assert chi2.ppf(TEST_LEVEL / 2, dof) < float((rest * rest).sum()) / SIGMA**2 < chi2.ppf(1 - TEST_LEVEL / 2, dof)
    corr = np.corrcoef(along.T)[np.triu_indices(covariance.k, 1)]
    assert np.abs(corr).max() < norm.ppf(1 - TEST_LEVEL / 2) / np.sqrt(samples)  # uncorrelated directions
    assert float(along[:, 0] @ along[:, 0]) / SIGMA**2 > chi2.ppf(1 - TEST_LEVEL, samples)  # not isotropic


def test_counts_follow_the_covariance_and_agree_with_library_predict(lit) -> None:
    folder, base, w, b, covariance, s = lit
    graph = build_smoothed_graph(base, folder / "seeded.onnx", K, SIGMA, ALPHA, seed=12, lighting=covariance)
    session = _session(graph.path)
    x = points_at_margins(w, b, np.full(CHW, 0.5), np.array([0.5 * s]))
    ones = int(sum(session.run(None, {"image": x})[0][1] for _ in range(40)))
    assert binomtest(ones, 40 * K, float(norm.cdf(0.5))).pvalue > TEST_LEVEL  # the lighting s, not sigma
    assert binomtest(ones, 40 * K, float(norm.cdf(0.5 * s / SIGMA))).pvalue < TEST_LEVEL
    rng = np.random.default_rng(3)
    count = 200
    t = rng.uniform(0.5, 3.0, count) * rng.choice([-1.0, 1.0], count)  # margins in units of s, both classes
    images = points_at_margins(w, b, np.full(CHW, 0.5), t * s)
    device = [predict_from_counts(session.run(None, {"image": im[None]})[0], ALPHA) for im in images]
    library = SmoothedClassifier.from_onnx(base, SIGMA, batch_size=K, threads=1, provider="cpu",
                                           lighting=covariance).predict_many(images, K, ALPHA, seed=4)
    c = min(m for m in range(K // 2, K + 1) if binomtest(m, K, 0.5).pvalue <= ALPHA)
    p = norm.cdf(t)
    one, zero = binom.sf(c - 1, K, p), binom.cdf(K - c, K, p)
    expected = float((1 - (one**2 + zero**2 + (1 - one - zero) ** 2)).sum())  # two independent PREDICTs differ
    disagreements = int(np.sum(np.array(device) != np.array(library)))
    assert disagreements <= expected + 5 * np.sqrt(expected) + 2, (disagreements, expected)
    wrong = sum(1 for a, m in zip(device, t) if a not in (-1, int(m > 0)))
    assert wrong <= binom.ppf(1 - TEST_LEVEL, count, ALPHA)  # PREDICT's guarantee, for the graph's answers


def test_isotropic_graphs_record_no_lighting(lit, tmp_path: Path) -> None:
    _, base, _, _, _, _ = lit
    plain = build_smoothed_graph(base, tmp_path / "a.onnx", K, SIGMA, ALPHA)
    none = build_smoothed_graph(base, tmp_path / "b.onnx", K, SIGMA, ALPHA,
                                lighting=smoothing_covariance("none", 0.0, SIGMA, CHW))
    assert "lighting" not in plain.metadata and read_smoothed_lighting(plain.path) is None
    assert plain.path.read_bytes() == none.path.read_bytes()


@pytest.mark.parametrize("case", ["sigma", "shape", "record"])
def test_bad_lighting_is_one_line_and_writes_nothing(lit, tmp_path: Path, case: str) -> None:
    _, base, _, _, covariance, _ = lit
    out = tmp_path / "out.onnx"
    if case == "record":
        graph = build_smoothed_graph(base, out, K, SIGMA, ALPHA, lighting=covariance)
        model = onnx.load(str(graph.path))
        next(p for p in model.metadata_props if p.key == "lighting").value = '{"directions": "dc"}'
        onnx.save(model, str(out))
        with pytest.raises(InputError) as err:
            read_smoothed_lighting(out)
        assert "metadata 'lighting'" in str(err.value) and "\n" not in str(err.value)
        return
    bad = (LightingCovariance.build("dc", TAU, 0.5, CHW) if case == "sigma"
           else LightingCovariance.build("dc", TAU, SIGMA, (3, 4, 4)))
    with pytest.raises(InputError) as err:
        build_smoothed_graph(base, out, K, SIGMA, ALPHA, lighting=bad)
    assert ("sigma 0.5" if case == "sigma" else "(3, 4, 4)") in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
