"""tls-alpn-01 (RFC 8737), for DNS names and IP addresses (RFC 8738 section 6).

A TLS handshake with ALPN ``acme-tls/1`` on ``config.tlsalpn01_port`` must
present a validation certificate: one subjectAltName naming the identifier and
the critical acmeIdentifier extension holding SHA-256 of the key authorization.
An IP identifier's SNI is its reverse-DNS name. A refusal says which rule the
certificate breaks, never what it contains.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from typing import Final

import trio
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from engine.acme.problems import ACMEProblem

from .config import ValidationConfig
from .dial import addr_port, connect_any, vetted
from .policy import IPAddress, target
from .trace import Trace, brief, guarded

ACME_TLS_ALPN: Final = "acme-tls/1"
ID_PE_ACME_IDENTIFIER: Final = ObjectIdentifier("1.3.6.1.5.5.7.1.31")


async def validate_tlsalpn01(
    identifier_type: str, value: str, key_authorization: str, config: ValidationConfig
) -> None:
    """A TLS handshake with ALPN acme-tls/1 must present the RFC 8737 validation certificate."""
    trace = Trace("tls-alpn-01")
    await guarded(
        trace,
        config.timeout,
        lambda: _tlsalpn01(identifier_type, value, key_authorization, config, trace),
    )


@functools.lru_cache(maxsize=1)
def _alpn_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the validation certificate is self-signed
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 section 4
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    return ctx


async def _tlsalpn01(
    identifier_type: str,
    value: str,
    key_authorization: str,
    config: ValidationConfig,
    trace: Trace,
) -> None:
    host = target(identifier_type, value, trace)
    # RFC 8738 section 6: an IP identifier's SNI is its reverse-DNS name.
    sni = host if isinstance(host, str) else host.reverse_pointer
    port = config.tlsalpn01_port
    addresses = await vetted(host, config, trace, port)
    what = f"TLS with SNI {sni}"
    addr, tcp = await connect_any(addresses, port, config, trace, what)
    where = f"{addr_port(addr, port)} (SNI {sni})"
    tls = trio.SSLStream(tcp, _alpn_context(), server_hostname=sni)
    try:
        trace.at(f"during the TLS handshake with {where}")
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise trace.problem(
                "tls", f"TLS handshake with {where} failed: {brief(cause)}"
            ) from exc
        if tls.selected_alpn_protocol() != ACME_TLS_ALPN:
            raise trace.problem("tls", f"{where} did not negotiate ALPN {ACME_TLS_ALPN}")
        der = tls.getpeercert(binary_form=True)
    finally:
        await trio.aclose_forcefully(tls)
    if not der:
        raise trace.problem("tls", f"{where} presented no certificate")
    _check_acme_certificate(der, host, key_authorization, where, trace)


def _check_acme_certificate(
    der: bytes, host: str | IPAddress, key_authorization: str, where: str, trace: Trace
) -> None:
    """RFC 8737 section 3: one SAN naming the identifier, and the critical
    acmeIdentifier extension holding SHA-256 of the key authorization.

    A refusal says which rule the certificate breaks, not what it contains."""

    def wrong(detail: str) -> ACMEProblem:
        return trace.problem("incorrectResponse", f"certificate from {where} {detail}")

    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except (
        ValueError,
        x509.InvalidVersion,  # a version other than v1, v2 or v3
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise wrong("cannot be parsed") from exc
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise wrong("has no subjectAltName") from None
    names = list(san)
    if len(names) != 1:
        raise wrong("does not have exactly one subjectAltName entry")
    entry = names[0]
    if isinstance(host, str):
        ok = isinstance(entry, x509.DNSName) and entry.value.lower() == host
    else:
        ok = isinstance(entry, x509.IPAddress) and entry.value == host
    if not ok:
        kind = "dNSName" if isinstance(host, str) else "iPAddress"
        raise wrong(f"does not name the {kind} {host}")
    try:
        ext = extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        raise wrong("has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)") from None
    if not ext.critical:
        raise wrong("has an acmeIdentifier extension that is not critical")
    value = ext.value
    got = value.value if isinstance(value, x509.UnrecognizedExtension) else None
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    expected = b"\x04\x20" + digest  # DER OCTET STRING of 32 bytes
    if got != expected:
        raise wrong(
            "has an acmeIdentifier that is not the SHA-256 of the key authorization"
            f" ({expected.hex()})"
        )
