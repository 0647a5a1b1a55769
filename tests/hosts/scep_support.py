"""A SCEP client for the tests: builds requests with engine.scep's client side and reads
the CA's replies, in process (``SCEPService.pki_operation``) or over HTTP."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from engine.ports import CountingRandom
from engine.scep import (
    CertRep,
    ContentEncryption,
    MessageType,
    Signer,
    build_pki_message,
    read_cert_rep,
)
from hosts.testing.keys import self_signed_certificate as self_signed

CHALLENGE = "correct-horse-battery-staple-42"
PROVISIONER = "mdm"

_KEYS: list[rsa.RSAPrivateKey] = []


def client_key(index: int = 0) -> rsa.RSAPrivateKey:
    """RSA-2048 client keys, made once per test process."""
    while len(_KEYS) <= index:
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[index]


def scep_csr(
    key: rsa.RSAPrivateKey,
    common_name: str,
    challenge: str | None = None,
    *,
    sans: tuple[str, ...] = (),
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def add_scep_provisioner(data_dir: Path, **options: Any) -> None:
    """Append a SCEP provisioner (name "mdm" and a static challenge unless told) to
    DATA_DIR/devid.toml."""
    config_path = data_dir / "devid.toml"
    config = tomllib.loads(config_path.read_text())
    table: dict[str, Any] = {"type": "SCEP", "name": PROVISIONER}
    if "challenge_file" not in options and "challenge_env" not in options:
        secret = data_dir / "secrets" / "scep-challenge"
        secret.write_text(CHALLENGE + "\n")
        table["challenge_file"] = "secrets/scep-challenge"
    table.update(options)
    table = {k: v for k, v in table.items() if v is not None}
    config.setdefault("provisioners", []).append(table)
    config_path.write_text(tomli_w.dumps(config))


@attrs.define
class SCEPClient:
    """One client identity (key and signer certificate) talking to one provisioner.

    *send* takes the DER request and returns the DER CertRep: in process
    (``authority.scep.pki_operation``) or over HTTP."""

    send: Callable[[bytes], bytes]
    ra: x509.Certificate
    key: rsa.RSAPrivateKey
    signer: x509.Certificate
    random: CountingRandom = attrs.field(factory=lambda: CountingRandom(b"scep-client"))

    def request(
        self,
        transaction_id: str,
        content: bytes,
        message_type: MessageType | int = MessageType.PKCS_REQ,
        *,
        encryption: ContentEncryption = ContentEncryption.AES256_CBC,
        digest: str = "sha256",
        signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        recipient: x509.Certificate | None = None,
    ) -> bytes:
        """The DER PKI message (not sent)."""
        cert, key = signer or (self.signer, self.key)
        return build_pki_message(
            message_type=message_type,  # type: ignore[arg-type]
            transaction_id=transaction_id,
            sender_nonce=self.random.bytes(16),
            content=content,
            recipient=recipient or self.ra,
            signer=Signer(certificate=cert, key=key),
            now=datetime.now(UTC),
            random=self.random,
            encryption=encryption,
            digest=digest,
        )

    def reply(
        self, message: bytes, *, signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None
    ) -> CertRep:
        cert, key = signer or (self.signer, self.key)
        return read_cert_rep(self.send(message), trusted=[self.ra], recipient=cert, key=key)

    def call(
        self,
        transaction_id: str,
        content: bytes,
        message_type: MessageType | int = MessageType.PKCS_REQ,
        **options: Any,
    ) -> CertRep:
        signer = options.get("signer")
        return self.reply(
            self.request(transaction_id, content, message_type, **options), signer=signer
        )


def in_process_client(authority: Any, key_index: int = 0, name: str = "dev1") -> SCEPClient:
    key = client_key(key_index)
    ra = authority.scep.ca_certificates(PROVISIONER)[0]
    return SCEPClient(
        send=lambda der: authority.scep.pki_operation(PROVISIONER, der),
        ra=ra,
        key=key,
        signer=self_signed(key, name),
    )


def counts(authority: Any) -> Mapping[str, int]:
    """How many certificates and SCEP transactions the store holds."""
    stores = authority.ca.stores
    return {
        "certificates": stores.certificates.count_certificates(),
        "transactions": len(stores.scep.transactions(limit=10_000)),
    }
