"""SCEP messages against OpenSSL's CMS: envelopes OpenSSL makes decrypt here, and the
CertReps and requests built here verify and decrypt with ``openssl cms``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from engine.ports import CountingRandom
from engine.scep import (
    ContentEncryption,
    FailInfo,
    PKIStatus,
    SCEPFailure,
    Signer,
    build_cert_rep,
    certs_only,
    decrypt_envelope,
)
from tests.engine.scep_fixtures import NOW, client, csr, identity, ra, request, rsa_key

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
ALL = frozenset(ContentEncryption)


def _openssl(*args: str | Path) -> bytes:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, check=True)
    return result.stdout


def _write_identity(directory: Path, name: str, signer: Signer) -> tuple[Path, Path]:
    certificate = directory / f"{name}.pem"
    key = directory / f"{name}.key"
    certificate.write_bytes(signer.certificate.public_bytes(Encoding.PEM))
    key.write_bytes(signer.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return certificate, key


@pytest.mark.parametrize(
    "options",
    [
        ["-aes128"],
        ["-aes256"],
        ["-des3"],
        ["-aes256", "-keyid"],
        [
            "-aes128",
            "-recip",
            "{ra}",
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
            "-keyopt",
            "rsa_mgf1_md:sha256",
        ],
        ["-aes256", "-recip", "{ra}", "-keyopt", "rsa_padding_mode:oaep"],
    ],
)
def test_openssl_envelopes_decrypt(tmp_path: Path, options: list[str]) -> None:
    certificate, _ = _write_identity(tmp_path, "ra", ra())
    plain = tmp_path / "plain"
    plain.write_bytes(b"a CSR, say")
    out = tmp_path / "env.der"
    # -keyopt applies to the -recip before it.
    if "-recip" not in options:
        options = [*options, "-recip", "{ra}"]
    arguments = [str(certificate) if o == "{ra}" else o for o in options]
    _openssl("cms", "-encrypt", *arguments, "-binary", "-in", plain, "-outform", "DER",
             "-out", out)  # fmt: skip
    assert decrypt_envelope(out.read_bytes(), ra().certificate, ra().key, allowed=ALL) == (
        b"a CSR, say"
    )


def test_openssl_aes192_envelope_is_a_bad_alg(tmp_path: Path) -> None:
    certificate, _ = _write_identity(tmp_path, "ra", ra())
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    out = tmp_path / "env.der"
    _openssl("cms", "-encrypt", "-aes192", "-recip", certificate, "-binary", "-in", plain,
             "-outform", "DER", "-out", out)  # fmt: skip
    with pytest.raises(SCEPFailure) as refused:
        decrypt_envelope(out.read_bytes(), ra().certificate, ra().key, allowed=ALL)
    assert refused.value.fail_info is FailInfo.BAD_ALG
    assert "aes192-cbc" in str(refused.value)


@pytest.mark.parametrize("encryption", list(ContentEncryption))
def test_openssl_verifies_and_decrypts_a_cert_rep(
    tmp_path: Path, encryption: ContentEncryption
) -> None:
    client_certificate, client_key = _write_identity(tmp_path, "client", client())
    issued = identity("device-1", rsa_key("device"), serial=77, issuer="devid CA").certificate
    reply = tmp_path / "rep.der"
    reply.write_bytes(
        build_cert_rep(
            signer=ra(),
            transaction_id="tx-1",
            recipient_nonce=b"n" * 16,
            sender_nonce=b"s" * 16,
            status=PKIStatus.SUCCESS,
            now=NOW,
            random=CountingRandom(),
            content=certs_only([issued]),
            recipient=client().certificate,
            encryption=encryption,
        )
    )
    envelope = tmp_path / "env.der"
    _openssl("cms", "-verify", "-noverify", "-inform", "DER", "-in", reply, "-binary",
             "-out", envelope)  # fmt: skip
    degenerate = tmp_path / "certs.der"
    # OpenSSL 3 keeps single DES in its legacy provider.
    legacy = ("-provider", "legacy", "-provider", "default")
    providers = legacy if encryption is ContentEncryption.DES_CBC else ()
    _openssl("cms", "-decrypt", *providers, "-inform", "DER", "-in", envelope, "-recip",
             client_certificate, "-inkey", client_key, "-binary", "-out", degenerate)  # fmt: skip
    assert degenerate.read_bytes() == certs_only([issued])
    printed = _openssl("pkcs7", "-inform", "DER", "-in", degenerate, "-print_certs", "-noout")
    assert b"CN = device-1" in printed or b"CN=device-1" in printed


@pytest.mark.parametrize(
    ("kind", "digest", "key_transport"),
    [("rsa", "sha256", "pkcs1v15"), ("ec", "sha384", "oaep"), ("rsa", "sha1", "oaep-sha1")],
)
def test_openssl_verifies_and_decrypts_a_request(
    tmp_path: Path, kind: str, digest: str, key_transport: str
) -> None:
    ra_certificate, ra_key = _write_identity(tmp_path, "ra", ra())
    der = csr(rsa_key("device"), "device-1", challenge="pw")
    message = tmp_path / "req.der"
    message.write_bytes(
        request(der, signer=client(kind), digest=digest, key_transport=key_transport)
    )
    envelope = tmp_path / "env.der"
    _openssl("cms", "-verify", "-noverify", "-inform", "DER", "-in", message, "-binary",
             "-out", envelope)  # fmt: skip
    plaintext = tmp_path / "csr.der"
    _openssl("cms", "-decrypt", "-inform", "DER", "-in", envelope, "-recip", ra_certificate,
             "-inkey", ra_key, "-binary", "-out", plaintext)  # fmt: skip
    assert plaintext.read_bytes() == der
