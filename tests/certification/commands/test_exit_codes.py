"""A crash is never read as a rejection: unexpected errors exit 70 with one line (the traceback on request)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certification import cli
from certification.errors import EXIT_INTERNAL_ERROR
from support import REPO


def _boom(args: object) -> int:
    raise ZeroDivisionError("division by zero somewhere deep")


def test_unexpected_error_is_one_line_and_its_own_exit_code(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    from certification.commands import merge

    monkeypatch.setattr(merge, "run_merge", _boom)
    monkeypatch.delenv("SMOOTHCERT_DEBUG", raising=False)
    assert cli.main(["merge", "x.jsonl", "--out", str(tmp_path / "m.jsonl")]) == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: ZeroDivisionError: division by zero somewhere deep" in err[0]
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "merge", "x.jsonl", "--out", str(tmp_path / "m.jsonl")])


def test_a_stage_that_crashes_exits_70_not_1(tmp_path: Path) -> None:
    """A params section of the wrong shape used to end in a traceback with exit 1, the code of REJECT."""
    (tmp_path / "params.yaml").write_text("data: [1, 2]\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SMOOTHCERT_TRACKING": "off"}
    env.pop("SMOOTHCERT_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "pipeline.data"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode in (2, EXIT_INTERNAL_ERROR), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_verify_exit_codes_are_distinct_per_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """verify: 3 for a development-signed dossier (never 0), 1 when approvals are required and missing, 2 on bad input."""
    from support.signed_dossier import build_and_sign

    signed = build_and_sign(tmp_path / "run", accepted=True)
    monkeypatch.chdir(signed.root)
    assert cli.main(["verify", str(signed.pdf)]) == 3
    assert cli.main(["verify", str(signed.pdf), "--require-approvals"]) == 1
    assert cli.main(["verify", str(tmp_path / "missing.pdf")]) == 2
    capsys.readouterr()
