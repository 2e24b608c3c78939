"""The dossier's model-identity section names the int8 artifact that was certified and how it was made."""
from __future__ import annotations

from certification.dossier import render
from certification.dossier.layout import styles


def _text(flowables) -> str:
    parts = []
    for f in flowables:
        if hasattr(f, "_cellvalues"):
            parts += [getattr(cell, "text", str(cell)) for row in f._cellvalues for cell in row]
        else:
            parts.append(getattr(f, "text", ""))
    return " ".join(parts)


def _model(**card):
    base = {"architecture": "edge-dscnn-v1", "path": "models/model.onnx", "opset": 18, "onnxruntime_version": "1.32.0",
            "quantization": "int8", "quantization_method": "qat", "parameters": 1, "flops": 2, "input_shape": [None, 3, 8, 8],
            "normalization": {"mean": [0.5], "std": [0.2]}, "class_names": ["a", "b"], "fp32_sha256": "f" * 64}
    model = {k: v for k, v in {**base, **card}.items() if v is not None}  # None: a card from before the key existed
    ev = {"model": model, "hashes": {"model_sha256": "e" * 64}, "data": {"classes": ["a", "b"]},
          "export": {"quantization_method": card.get("quantization_method", "qat"), "model_bytes": 123}}
    return _text(render._model(ev, None, styles()))


def test_int8_sections_name_the_method_and_both_hashes():
    text = _model()
    assert "int8 (qat: quantization-aware fine-tuning under noise, then static QDQ)" in text
    assert "e" * 64 in text and "f" * 64 in text and "not the certified file" in text
    assert "post-training static QDQ" in _model(quantization_method="ptq")
    assert "int8 (ptq: post-training" in _model(quantization_method=None)


def test_float_model_says_the_float_export_is_certified():
    text = _model(quantization="none", quantization_method="none")
    assert "the certified file is the float export" in text and "f" * 64 not in text
