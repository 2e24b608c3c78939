"""Quantization-aware fine-tuning: the fake-quant torch model and the int8 QDQ file ONNX Runtime runs agree."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from certification.data import synthetic
from certification.errors import InputError
from certification.onnx_export import export_onnx, noisy_copy, quantize_int8
from certification.onnx_model import open_session, session_logits
from certification.qat import FoldedEdgeCNN, QatSettings, activation_qparams, fake_quant_logits, finetune
from certification.training import TrainConfig, to_tensor, train_model

SIGMA = 0.25


@pytest.fixture(scope="module")
def trained():
    train, val = synthetic.generate_split(300, 28, 3, "train"), synthetic.generate_split(100, 28, 3, "val")
    result = train_model(train.images, train.labels, val.images, val.labels, 4,
                         TrainConfig(sigma=SIGMA, epochs=2, batch_size=64, lr=0.01, width=8, seed=1), threads=1)
    return result.model, train, val


@pytest.fixture(scope="module")
def qat_export(trained, tmp_path_factory):
    """One epoch of QAT, the float graph exported and quantized by ONNX Runtime on the same noisy calibration."""
    model, train, val = trained
    calibration = to_tensor(val.images[:64]).numpy()
    result = finetune(model, to_tensor(train.images), torch.from_numpy(train.labels), torch.from_numpy(noisy_copy(calibration, SIGMA, 9)),
                      SIGMA, QatSettings(epochs=1, batch_size=64, lr=0.001, seed=5), threads=1)
    folder = tmp_path_factory.mktemp("qat")
    export_onnx(result.model.float_graph(), folder / "qat_fp32.onnx", (3, 28, 28), 18)
    quantize_int8(folder / "qat_fp32.onnx", folder / "qat_int8.onnx", calibration, SIGMA, 9)
    return result, folder / "qat_int8.onnx", to_tensor(val.images).numpy()


def test_folding_reproduces_the_trained_model(trained):
    model, _, val = trained
    x = to_tensor(val.images)
    with torch.no_grad():
        assert torch.allclose(FoldedEdgeCNN(model)(x), model(x), atol=1e-5)


def test_int8_file_follows_the_fake_quant_model_under_noise(qat_export):
    result, int8, x = qat_export
    assert len(result.losses) == 1 and np.isfinite(result.losses[0])
    noisy = noisy_copy(np.repeat(x, 3, axis=0), SIGMA, 1)
    ort_logits = session_logits(open_session(int8, 1, "cpu"), noisy)
    torch_logits = fake_quant_logits(result.model, noisy)
    logit_scale, _ = activation_qparams(result.model.low[-1], result.model.high[-1])
    assert np.mean(ort_logits.argmax(1) == torch_logits.argmax(1)) >= 0.98
    # int8 kernels and fake quantization round the same values at the same points: a few logit steps at most
    assert np.median(np.abs(ort_logits - torch_logits)) <= logit_scale * 1.01


def test_the_quantizer_uses_the_ranges_the_model_was_trained_with(qat_export):
    """ORT's MinMax calibration of the float graph finds the activation scales QAT used (same noisy inputs)."""
    result, int8, _ = qat_export
    initializers = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    graph = onnx.load(str(int8)).graph
    reshaped = {o for n in graph.node if n.op_type == "Reshape" for o in n.output}  # re-quantized with its input's scale
    activations = [n.input[1] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in reshaped]
    ort_scales = np.array([float(initializers[name]) for name in activations])
    torch_scales = np.array([activation_qparams(lo, hi)[0] for lo, hi in zip(result.model.low, result.model.high)])
    np.testing.assert_allclose(ort_scales, torch_scales, rtol=1e-3)


@pytest.mark.parametrize("change, message", [({"epochs": 0}, "epochs must be an integer >= 1"),
                                             ({"lr": float("nan")}, "lr must be a finite number > 0"),
                                             ({"seed": -1}, "seed must be a non-negative integer")])
def test_bad_qat_settings_are_one_line(change, message):
    with pytest.raises(InputError, match=message):
        QatSettings(**change).validate()
