"""The library's layers: no import cycles, and the lower layers never import the upper ones."""
from __future__ import annotations

import pytest

from support.imports import REPO, cycles, import_graph, imported_modules

GRAPH = import_graph("certification")

#: package or module prefix -> prefixes it must never import (arrows point down only)
FORBIDDEN = {
    "certification.signing": ("certification.dossier", "certification.gate", "certification.records", "certification.summary",
                              "certification.commands", "certification.smoothing"),
    "certification.records": ("certification.summary", "certification.gate", "certification.dossier", "certification.smoothing"),
    "certification.summary": ("certification.gate", "certification.dossier", "certification.smoothing", "certification.certify_run"),
    "certification.smoothing": ("certification.certify_run", "certification.summary", "certification.gate", "certification.dossier"),
    "certification.data": ("certification.smoothing", "certification.dossier", "certification.gate", "certification.failure_modes"),
    "certification.failure_modes": ("certification.dossier", "certification.gate", "certification.commands"),
    "certification.dossier": ("certification.commands",),
    # the Ray backend schedules the engine; the file-level run (certify_run) calls it, never the other way round
    "certification.ray_backend": ("certification.certify_run", "certification.summary", "certification.gate",
                                  "certification.dossier", "certification.commands"),
}


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def _unit(module: str) -> str:
    """A subpackage counts as one unit (certification.dossier.render -> certification.dossier)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def test_no_cycles_between_subpackages() -> None:
    """E.g. dossier -> signing -> dossier (signing.verify reading the dossier's records) is a cycle of units."""
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        units.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    assert cycles(units) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("lower", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(lower: str) -> None:
    offending = sorted(f"{module} -> {target}" for module, targets in GRAPH.items()
                       if module == lower or module.startswith(lower + ".")
                       for target in targets if target.startswith(FORBIDDEN[lower]))
    assert not offending, offending


def test_the_library_never_imports_the_pipeline() -> None:
    for path in sorted((REPO / "certification").rglob("*.py")):
        assert not any(m.startswith("pipeline") for m in imported_modules(path)), path
