"""Shared test support: fixtures that build real small models, splits, records and dossiers (one place for all).

Modules: ``oracle`` (linear ONNX models whose smoothed classifier is known analytically), ``linear_fixture`` (a
shared linear model, splits at chosen margins, real certify records), ``gate_rows`` (hand-made certify rows and the
gate's view of them), ``dossier_outputs`` (a complete, self-consistent set of pipeline outputs), ``signed_dossier``
(build and sign it with a development PKI), ``imports`` (the project's static import graph).
"""
from __future__ import annotations

from pathlib import Path

#: The repository root.
REPO = Path(__file__).resolve().parents[2]
