"""Which key signs: the dossier's rules, shared by the dossier stage, the device stage and ``smoothcert sign-model``."""
from __future__ import annotations

import os
from dataclasses import dataclass

from pyhanko.sign.signers import SimpleSigner

from certification.signing.devpki import DEFAULT_DEV_PKI_DIR, DevPki, ensure_dev_pki, is_dev_certificate
from certification.signing.keys import common_name, load_signer, passphrase_from_env, signer_certificate

#: Environment variable naming the production PKCS#12 (CI decodes it from a secret); it wins over a configured path,
#: so no key path has to be written into params.yaml.
SIGNING_KEY_ENV = "SMOOTHCERT_SIGNING_KEY"


@dataclass(frozen=True)
class ChosenSigner:
    """The signer the key rules chose: ``development`` when a development CA issued its certificate (the
    development PKI, or a development certificate named as the production key); ``dev_pki`` is set when the
    development PKI was used because no production key was named."""

    signer: SimpleSigner
    development: bool
    name: str
    dev_pki: DevPki | None = None


def choose_signer(signing_key: str | os.PathLike[str] | None, passphrase_env: str,
                  dev_pki_dir: str | os.PathLike[str] | None = None) -> ChosenSigner:
    """The dossier's key rules: the PKCS#12 named by $SMOOTHCERT_SIGNING_KEY, else ``signing_key``, decrypted with
    the passphrase in ``passphrase_env``; when neither names one, the development PKI (created on first use in
    ``dev_pki_dir``, default ``.smoothcert/dev-pki``): NOT FOR SUBMISSION."""
    key = os.environ.get(SIGNING_KEY_ENV) or (str(signing_key) if signing_key else "")
    if key:
        signer = load_signer(key, passphrase_from_env(passphrase_env), passphrase_env)
        cert = signer_certificate(signer)
        return ChosenSigner(signer, is_dev_certificate(cert), common_name(cert))
    pki = ensure_dev_pki(dev_pki_dir or DEFAULT_DEV_PKI_DIR, passphrase_env=passphrase_env)
    signer = pki.signer()
    return ChosenSigner(signer, True, common_name(signer_certificate(signer)), pki)
