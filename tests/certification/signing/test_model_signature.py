"""Detached model signatures: sign-model / verify-model exit codes, the dossier's key rules, bad input, and the
README's device-side check refusing a swapped model or a tampered signature."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.exceptions import InvalidSignature

from certification.cli import main as cli
from certification.signing.detached import read_signature, signature_path
from support import REPO
from support.oracle import conv_onnx
from support.signed_dossier import make_test_ca

CHW = (3, 8, 8)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with two different models; the development PKI is created there (cwd), no production key is set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMOOTHCERT_SIGNING_KEY", raising=False)
    monkeypatch.delenv("SMOOTHCERT_KEY_PASSPHRASE", raising=False)
    conv_onnx(tmp_path / "model.onnx", CHW, num_classes=4, seed=0)
    conv_onnx(tmp_path / "other.onnx", CHW, num_classes=4, seed=1)
    return tmp_path


def _swap_signature_value(source: Path, target: Path) -> None:
    """Copy a signature with one bit of its RSA/ECDSA signature value flipped (it still parses as CMS)."""
    blob = bytearray(source.read_bytes())
    value = cms.ContentInfo.load(bytes(blob))["content"]["signer_infos"][0]["signature"].native
    at = bytes(blob).index(value[:16]) + 8
    blob[at] ^= 0x01
    target.write_bytes(bytes(blob))


def test_development_signature_verifies_as_development_and_a_swapped_model_does_not(workdir: Path, capsys) -> None:
    assert cli(["sign-model", "model.onnx"]) == 0
    sig = read_signature(signature_path(workdir / "model.onnx"))
    assert sig.development and sig.signing_time_utc.endswith("Z") and len(sig.sha256) == 64
    assert cli(["verify-model", "model.onnx"]) == 3
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("DEVELOPMENT:")
    assert cli(["verify-model", "model.onnx", "--trust-root", ".smoothcert/dev-pki/ca.pem"]) == 3  # still a dev key
    shutil.copyfile("other.onnx", "model.onnx")  # the model swapped under its signature
    assert cli(["verify-model", "model.onnx"]) == 1
    assert "NOT VERIFIED: hash" in capsys.readouterr().out
    _swap_signature_value(Path("model.onnx.p7s"), Path("other.onnx.p7s"))
    assert cli(["verify-model", "other.onnx"]) == 1  # right file, tampered signature value


def test_production_key_verifies_only_against_its_root(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ca = make_test_ca(workdir / "ca")
    monkeypatch.setenv("SMOOTHCERT_SIGNING_KEY", str(ca.issue("Release Signer", b"pw")))  # wins, as for the dossier
    monkeypatch.setenv("MODEL_PW", "pw")
    assert cli(["sign-model", "model.onnx", "--passphrase-env", "MODEL_PW"]) == 0
    assert not read_signature("model.onnx.p7s").development
    assert cli(["verify-model", "model.onnx", "--trust-root", str(ca.ca_pem)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("VERIFIED:")
    other = make_test_ca(workdir / "other-ca", name="Another Root CA")
    assert cli(["verify-model", "model.onnx", "--trust-root", str(other.ca_pem)]) == 1
    assert cli(["verify-model", "model.onnx"]) == 2  # a production signature needs --trust-root
    assert "--trust-root" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["not_onnx", "two_inputs", "garbage_signature", "missing_signature"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir: Path, case: str, capsys) -> None:
    import onnx
    from onnx import TensorProto, helper

    if case == "not_onnx":
        Path("model.onnx").write_bytes(b"\x00\x01 not a model")
        code = cli(["sign-model", "model.onnx"])
    elif case == "two_inputs":
        graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["logits"])], "two",
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 2]) for n in "ab"],
                                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), "model.onnx")
        code = cli(["sign-model", "model.onnx"])
    elif case == "garbage_signature":
        Path("model.onnx.p7s").write_bytes(b"-----BEGIN nonsense")
        code = cli(["verify-model", "model.onnx"])
    else:
        code = cli(["verify-model", "model.onnx"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "error:" in err
    if case in ("not_onnx", "two_inputs"):
        assert not Path("model.onnx.p7s").exists() and not Path(".smoothcert").exists()


def _device_loader():
    match = re.search(r"<!-- device-load -->\s*```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert match, "README.md lost its device-load code block"
    namespace: dict = {}
    exec(compile(match.group(1), "README.md:device-load", "exec"), namespace)  # noqa: S102 - the README's own example
    return namespace["load_verified"]


@pytest.mark.parametrize("key", ["development", "production"])
def test_readme_device_check_loads_the_signed_model_and_refuses_a_swapped_one(workdir: Path, monkeypatch, key: str) -> None:
    load_verified = _device_loader()
    if key == "production":  # an EC key from a CA, as production keys usually are
        ca = make_test_ca(workdir / "ca")
        monkeypatch.setenv("SMOOTHCERT_SIGNING_KEY", str(ca.issue("Release Signer", b"pw")))
        monkeypatch.setenv("SMOOTHCERT_KEY_PASSPHRASE", "pw")
        root = str(ca.ca_pem)
    else:
        root = ".smoothcert/dev-pki/ca.pem"
    assert cli(["sign-model", "model.onnx"]) == 0
    session = load_verified("model.onnx", root)
    assert session.get_inputs()[0].name == "input"
    foreign = make_test_ca(workdir / "foreign", name="Foreign Root CA")
    with pytest.raises((ValueError, InvalidSignature)):
        load_verified("model.onnx", str(foreign.ca_pem))  # a signer the pinned CA did not issue
    shutil.copyfile("model.onnx.p7s", "other.onnx.p7s")
    with pytest.raises(ValueError, match="refusing to load"):
        load_verified("other.onnx", root)  # another model under this signature
    _swap_signature_value(Path("model.onnx.p7s"), Path("model.onnx.p7s"))
    with pytest.raises(InvalidSignature):
        load_verified("model.onnx", root)
