"""protocol stage: freeze the acceptance protocol (params ``gate``) before the test split is opened.

Writes results/protocol.json (:class:`certification.prespecification.ProtocolRecord`: the protocol, its SHA-256,
the UTC time, the git commit and whether params.yaml was committed). Runs before certify, which records the
first opening of the test split against this record. An unchanged protocol keeps its record and time (the
output is ``persist``-ed in dvc.yaml), so rerunning the stage never makes a protocol look newer than it is.
"""
from __future__ import annotations

from certification.errors import InputError
from certification.gate import protocol_sha256
from certification.gate_io import freeze_protocol, load_protocol
from certification.prespecification import git_state, read_protocol_record, write_protocol_record
from pipeline import layout
from pipeline.stage import PARAMS_FILE, run_stage
from pipeline.tracking import log_stage


def main() -> int:
    protocol = load_protocol(PARAMS_FILE, "gate")
    if layout.PROTOCOL_RECORD.is_file():
        try:
            kept = read_protocol_record(layout.PROTOCOL_RECORD)
        except InputError:
            kept = None
        if kept is not None and kept.protocol_sha256 == protocol_sha256(protocol):
            print(f"protocol: unchanged since {kept.frozen_utc} (sha256 {kept.protocol_sha256[:12]}...); kept "
                  f"{layout.PROTOCOL_RECORD}")
            return 0
    record = freeze_protocol(protocol, f"{PARAMS_FILE.as_posix()} section 'gate'", git_state(".", PARAMS_FILE))
    write_protocol_record(layout.PROTOCOL_RECORD, record)
    log_stage("protocol", params=protocol.to_dict(), metrics={}, artifacts=[layout.PROTOCOL_RECORD],
              tags={"smoothcert.protocol_sha256": record.protocol_sha256, "smoothcert.protocol_frozen_utc": record.frozen_utc})
    committed = {True: "committed", False: "NOT committed", None: "not in git"}[record.protocol_committed]
    print(f"protocol: frozen at {record.frozen_utc} (sha256 {record.protocol_sha256[:12]}..., params.yaml {committed} "
          f"at {record.git_commit[:12]}); wrote {layout.PROTOCOL_RECORD}")
    return 0


if __name__ == "__main__":
    run_stage("protocol", main)
