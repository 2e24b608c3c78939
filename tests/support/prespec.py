"""Test projects: freeze params.yaml's gate protocol as the pipeline's protocol stage does (at a fixed past time)."""
from __future__ import annotations

from pathlib import Path

from certification.errors import InputError
from certification.gate_io import freeze_protocol, load_protocol
from certification.prespecification import GitState, ProtocolRecord, write_protocol_record

FROZEN_UTC = "2026-01-01T00:00:00.000000Z"


def freeze_project_protocol(root: Path) -> ProtocolRecord | None:
    """Write root/results/protocol.json for root/params.yaml's ``gate:`` section; None (nothing written) when that
    section is missing or invalid, so the stage under test reports the protocol's own error."""
    try:
        protocol = load_protocol(root / "params.yaml", "gate")
    except InputError:
        return None
    record = freeze_protocol(protocol, "params.yaml section 'gate'", GitState("0" * 40, None), now=FROZEN_UTC)
    write_protocol_record(root / "results" / "protocol.json", record)
    return record
