"""One simulated device of the ``fleet`` section: its evidence made in software, and each
step of the product's flow as HTTP requests against a running ``devid serve``.

The software device stands in for the TPM so that the server is what is
measured: no swtpm, no TPM commands. What a TPM would produce comes from
:mod:`tests.attestation_fakes` (an ECC P-256 EK certified by a fake TPM vendor,
an AK with its TPM2_CertifyCreation evidence, TPM2_ActivateCredential with the
EK's private key, TPM2_Certify by the AK), and what the agent sends is built by
the agent's own code where it does not need a TPM (``agent.enroll``'s
attestation object and CSR, ``agent.accounts``' account listing, the
``plugins.minting`` X5C tokens). Keys, the EK certificate, the AK evidence and
the finalize CSR are made by :func:`prepare` before the clock starts; during a
step only per-request work is done (JWS and token signatures, the
credential's decryption, TPM2_Certify over the key authorization), cheap
next to the server's.

The steps, each one request or a few on a connection of its own, as the agent
opens one per exchange:

- :meth:`FleetDevice.register`: the operator's ``POST /api/v1/devices`` (EK URN,
  name, the fleet's tag), over an admin connection shared by many devices;
- :meth:`FleetDevice.enrol`: AK enrolment, ``POST /attest`` then ``POST /secret``
  with the activated credential; the AK certificate chain comes back;
- :meth:`FleetDevice.order`: ACME device-attest-01 through ``/acme/devices``:
  directory and nonce, newAccount, newOrder for the device's
  PermanentIdentifier, the authorization, the challenge answered with a ``tpm``
  attestation object (validated while the server answers), finalize with a CSR
  the device key signs, download;
- :meth:`FleetDevice.accounts`: ``GET /api/v1/device/accounts`` with an X5C bearer
  token the device key signs (as ``agent.accounts.fetch_accounts``), then for
  each account a new key, a CSR with the names listed and an X5C token for the
  account's provisioner, ``POST`` to its audience (``/1.0/sign``);
- :meth:`FleetDevice.renew`: ``POST /1.0/renew`` over mutual TLS with each of the
  three certificates (device, then each account), the certificate and its key
  as the TLS client certificate: the handshake is the credential, so it is
  timed with the request.

Each step checks what came back (the certificate certifies the device's key,
names what was asked) and raises :class:`FleetFailure` otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from agent.accounts import (
    DEVICE_API,
    DEVICE_API_ISSUER,
    TOKEN_LIFETIME,
    AccountSpec,
    device_subject,
)
from agent.caclient import make_csr
from engine.attestation.akcert import identities_of_ak_certificate
from engine.inventory import permanent_identifier_value
from engine.jose import b64url_encode
from engine.tpm import TPMTPublic
from hosts.testing.ports import LOOPBACK
from plugins.minting import mint_x5c_token
from tests.attestation_fakes import FakeDevice, Vendor, new_device, signing_key_public_area

from .acme_client import PEM_CHAIN, AcmeClient, AcmeFailure
from .common import BenchmarkError
from .loadgen import Connection, Response

JSON = "application/json"
#: The ACME provisioner of TPM-attested devices a new CA has (hosts.core.init).
DEVICES_PROVISIONER = "devices"
DIRECTORY_PATH = f"/acme/{DEVICES_PROVISIONER}/directory"
CHALLENGE_TYPE = "device-attest-01"
IDENTIFIER_TYPE = "permanent-identifier"
DEVICES_API = "/api/v1/devices"
ACCOUNTS_API = "/api/v1/accounts"
#: The tag every device of the fleet carries, and both accounts are given to.
FLEET_TAG = "fleet"
#: The two accounts every device gets (created once through the admin API).
ACCOUNTS: tuple[dict[str, Any], ...] = (
    {
        "name": "fleet-wifi",
        "type": "wifi",
        "commonName": "{device.name}",
        "sans": ["dns:{device.name}.wifi.fleet.test", "{device.ek}"],
        "tags": [FLEET_TAG],
    },
    {
        "name": "fleet-vpn",
        "type": "vpn",
        "commonName": "{device.name}",
        "sans": ["{device.ek}"],
        "eku": ["clientAuth", "ipsecIKE"],
        "tags": [FLEET_TAG],
    },
)
ACCOUNT_NAMES = tuple(str(a["name"]) for a in ACCOUNTS)
#: What the device renews, in order: its device certificate, then each account's.
DEVICE_CERTIFICATE = "device"
RENEWED = (DEVICE_CERTIFICATE, *ACCOUNT_NAMES)


class FleetFailure(BenchmarkError):
    """The server refused a step of a device's flow, or answered something wrong."""


def _problem(response: Response) -> str:
    text = response.body[:300].decode(errors="replace")
    return f"HTTP {response.status}: {' '.join(text.split())}"


def _json(response: Response, what: str, status: int) -> dict[str, Any]:
    if response.status != status:
        raise FleetFailure(f"{what}: {_problem(response)}")
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise FleetFailure(f"{what}: the answer is not a JSON object")
    return data


async def request_json(
    connection: Connection,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    what: str,
    *,
    status: int = 200,
    headers: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """One JSON request on *connection*; the answer's JSON object (FleetFailure otherwise)."""
    sent = list(headers)
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        sent.append(("content-type", JSON))
    response = await connection.request(method, path, data, sent)
    return _json(response, what, status)


def _pem_chain(data: dict[str, Any], what: str) -> list[x509.Certificate]:
    """The ``{crt, ca, certChain}`` answer's chain, leaf first."""
    pems = data.get("certChain") or [data.get("crt"), data.get("ca")]
    try:
        return [x509.load_pem_x509_certificate(str(p).encode()) for p in pems if p]
    except ValueError as exc:
        raise FleetFailure(f"{what}: a certificate cannot be read: {exc}") from None


def _certifies(
    chain: Sequence[x509.Certificate], key: ec.EllipticCurvePrivateKey, what: str
) -> None:
    if not chain or chain[0].public_key() != key.public_key():
        raise FleetFailure(f"{what}: the certificate does not certify the device's key")


@dataclass(frozen=True)
class Server:
    """Where the devices go: the server's origin, port and TLS roots."""

    port: int
    root: Path
    context: ssl.SSLContext
    admin_token: str

    @property
    def origin(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    async def connect(self, context: ssl.SSLContext | None = None) -> Connection:
        return await Connection.open(LOOPBACK, self.port, context or self.context)

    def client_context(self, pem: Path) -> ssl.SSLContext:
        """A TLS context trusting the CA's root that presents the chain and key in *pem*."""
        context = ssl.create_default_context(cafile=str(self.root))
        context.load_cert_chain(str(pem))
        return context


@dataclass
class FleetDevice:
    """One device: what it holds before the run, and what it gets during it."""

    index: int
    name: str
    fake: FakeDevice
    #: The PermanentIdentifier its certificates carry (base64url of the EK digest).
    identifier: str
    #: The key device-attest-01 certifies (in a real device, a TPM key) and its public area.
    device_key: ec.EllipticCurvePrivateKey
    device_public: TPMTPublic
    csr_der: bytes
    #: A key per account (the agent makes them in the TPM when it gets the certificate).
    account_keys: dict[str, ec.EllipticCurvePrivateKey]
    ak_chain: list[x509.Certificate] = field(default_factory=list)
    #: The chain of each certificate it holds ("device" and each account), leaf first.
    chains: dict[str, list[x509.Certificate]] = field(default_factory=dict)
    renewed: dict[str, x509.Certificate] = field(default_factory=dict)

    @property
    def urn(self) -> str:
        return self.fake.urn

    def key_of(self, certificate: str) -> ec.EllipticCurvePrivateKey:
        return (
            self.device_key if certificate == DEVICE_CERTIFICATE else self.account_keys[certificate]
        )

    # --- 1. the inventory -------------------------------------------------------------------

    def registration(self) -> dict[str, Any]:
        """The ``POST /api/v1/devices`` body an operator sends for this device."""
        return {"ek": self.urn, "name": self.name, "tags": [FLEET_TAG]}

    async def register(self, admin: Connection, token: str, seconds: dict[str, float]) -> None:
        started = time.perf_counter()
        answer = await request_json(
            admin,
            "POST",
            DEVICES_API,
            self.registration(),
            "POST /api/v1/devices",
            status=201,
            headers=[("authorization", f"Bearer {token}")],
        )
        seconds["register"] = time.perf_counter() - started
        if answer.get("ek") != self.urn:
            raise FleetFailure(f"POST /api/v1/devices registered {answer.get('ek')!r}")

    # --- 2. AK enrolment ---------------------------------------------------------------------

    async def enrol(self, server: Server, seconds: dict[str, float]) -> None:
        clock = time.perf_counter
        t = clock()
        connection = await server.connect()
        seconds["connect"] = clock() - t
        try:
            t = clock()
            challenge = await request_json(
                connection, "POST", "/attest", self.fake.attest_body(), "POST /attest"
            )
            seconds["POST /attest"] = clock() - t
            secret = self.fake.activate(challenge)  # TPM2_ActivateCredential, in software
            t = clock()
            answer = await request_json(connection, "POST", "/secret", secret, "POST /secret")
            seconds["POST /secret"] = clock() - t
        finally:
            await connection.aclose()
        raw = answer.get("chain")
        if not isinstance(raw, list) or len(raw) < 2:
            raise FleetFailure("POST /secret: no AK certificate chain")
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in raw]
        if chain[0].public_key() != self.fake.ak.private_key.public_key():
            raise FleetFailure("POST /secret: the AK certificate is for another key")
        bound = identities_of_ak_certificate(chain[0]).permanent_identifiers
        if self.identifier not in bound:
            raise FleetFailure(f"POST /secret: the AK certificate binds {bound!r}")
        self.ak_chain = chain

    # --- 3. the device certificate: ACME device-attest-01 ------------------------------------

    def attestation_object(self, key_authorization: str) -> str:
        """The challenge's ``attObj``: the AK's TPM2_Certify of the device key over
        SHA-256(key authorization), in the agent's own encoding."""
        from agent.enroll import attestation_object
        from agent.state import WrappedKey
        from agent.tpm import Certification

        attest, signature = self.fake.ak.certify(
            self.device_public, hashlib.sha256(key_authorization.encode("ascii")).digest()
        )
        wrapped = WrappedKey(public=self.device_public.to_tpm2b(), private=b"")
        att_obj = attestation_object(
            self.fake.ak.public, self.ak_chain, wrapped, Certification(attest, signature)
        )
        return b64url_encode(att_obj)

    async def order(self, server: Server, seconds: dict[str, float]) -> None:
        clock = time.perf_counter
        t = clock()
        connection = await server.connect()
        seconds["connect"] = clock() - t
        try:
            acme = AcmeClient(connection, f"{server.origin}{DIRECTORY_PATH}")
            t = clock()
            await acme.start()
            seconds["directory + nonce"] = clock() - t
            began = t = clock()
            await acme.new_account()
            seconds["newAccount"] = clock() - t
            t = clock()
            _, order = await acme.new_order([{"type": IDENTIFIER_TYPE, "value": self.identifier}])
            seconds["newOrder"] = clock() - t
            t = clock()
            authorizations = order.get("authorizations")
            if not isinstance(authorizations, list) or len(authorizations) != 1:
                raise FleetFailure(f"newOrder: not one authorization: {authorizations!r}")
            authz = await acme.get(str(authorizations[0]), "authorization")
            challenge = next(
                (
                    c
                    for c in authz.get("challenges") or []
                    if isinstance(c, dict) and c.get("type") == CHALLENGE_TYPE
                ),
                None,
            )
            if challenge is None:
                raise FleetFailure(f"authorization: no {CHALLENGE_TYPE} challenge")
            seconds["authorization"] = clock() - t
            t = clock()
            payload = {"attObj": self.attestation_object(f"{challenge['token']}.{acme.thumbprint}")}
            answered = await acme.respond(str(challenge["url"]), payload)
            if answered.get("status") != "valid":
                raise FleetFailure(
                    f"challenge: {answered.get('status')!r}: {answered.get('error')!r}"
                )
            seconds["challenge"] = clock() - t
            t = clock()
            response = await acme.post(str(order["finalize"]), {"csr": b64url_encode(self.csr_der)})
            if response.status != 200:
                raise FleetFailure(f"finalize: {_problem(response)}")
            finalized = _json(response, "finalize", 200)
            if finalized.get("status") != "valid":
                raise FleetFailure(f"finalize: the order is {finalized.get('status')!r}")
            seconds["finalize"] = clock() - t
            t = clock()
            response = await acme.post(str(finalized["certificate"]), None, accept=PEM_CHAIN)
            if response.status != 200:
                raise FleetFailure(f"download: {_problem(response)}")
            seconds["download"] = clock() - t
            seconds["order"] = clock() - began
        except AcmeFailure as exc:
            raise FleetFailure(str(exc)) from None
        finally:
            await connection.aclose()
        chain = x509.load_pem_x509_certificates(response.body)
        _certifies(chain, self.device_key, "the device certificate")
        bound = identities_of_ak_certificate(chain[0]).permanent_identifiers
        if self.identifier not in bound:
            raise FleetFailure("the device certificate does not carry the device's identifier")
        self.chains[DEVICE_CERTIFICATE] = chain[:2]

    # --- 4. account certificates ------------------------------------------------------------

    def _token(self, provisioner: str, subject: str, audience: str, **extra: Any) -> str:
        chain = self.chains[DEVICE_CERTIFICATE]
        return mint_x5c_token(
            self.device_key,
            list(chain),
            provisioner=provisioner,
            subject=subject,
            audience=audience,
            now=datetime.now(UTC),
            jti=secrets.token_urlsafe(16),
            lifetime=TOKEN_LIFETIME,
            **extra,
        )

    async def accounts(self, server: Server, seconds: dict[str, float]) -> None:
        clock = time.perf_counter
        t = clock()
        connection = await server.connect()
        seconds["connect"] = clock() - t
        try:
            t = clock()
            subject = device_subject(self.chains[DEVICE_CERTIFICATE][0])
            bearer = self._token(DEVICE_API_ISSUER, subject, f"{server.origin}{DEVICE_API}")
            listing = await request_json(
                connection,
                "GET",
                DEVICE_API,
                None,
                f"GET {DEVICE_API}",
                headers=[("authorization", f"Bearer {bearer}")],
            )
            seconds["GET device/accounts"] = clock() - t
            raw = listing.get("accounts")
            if not isinstance(raw, list):
                raise FleetFailure(f"GET {DEVICE_API}: no accounts list")
            listed = {spec.name: spec for spec in map(AccountSpec.from_json, raw)}
            if set(listed) != set(ACCOUNT_NAMES):
                raise FleetFailure(f"GET {DEVICE_API}: accounts {sorted(listed)}")
            for name in ACCOUNT_NAMES:
                spec = listed[name]
                t = clock()
                await self._account_certificate(connection, server, spec)
                seconds[f"sign {name}"] = clock() - t
        finally:
            await connection.aclose()

    async def _account_certificate(
        self, connection: Connection, server: Server, spec: AccountSpec
    ) -> None:
        key = self.account_keys[spec.name]
        subject = spec.subject
        sans = list(spec.sans) or [subject]
        csr = make_csr(key, subject, sans)
        token = self._token(spec.provisioner, subject, spec.audience, sans=sans)
        if not spec.audience.startswith(server.origin + "/"):
            raise FleetFailure(f"account {spec.name}: audience {spec.audience} is elsewhere")
        body = {"csr": csr.public_bytes(Encoding.PEM).decode(), "ott": token}
        path = spec.audience[len(server.origin) :]
        answer = await request_json(
            connection, "POST", path, body, f"account {spec.name}", status=201
        )
        chain = _pem_chain(answer, f"account {spec.name}")
        _certifies(chain, key, f"account {spec.name}")
        self.chains[spec.name] = chain[:2]

    # --- 5. renewal over mutual TLS ----------------------------------------------------------

    def client_pem(self, certificate: str, directory: Path) -> Path:
        """The certificate's chain and key in one file, 0600, for the TLS client."""
        key = self.key_of(certificate)
        path = directory / f"{self.index}-{certificate}.pem"
        data = b"".join(c.public_bytes(Encoding.PEM) for c in self.chains[certificate])
        data += key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        path.touch(mode=0o600)
        path.write_bytes(data)
        return path

    async def renew(self, server: Server, directory: Path, seconds: dict[str, float]) -> None:
        for certificate in RENEWED:
            pem = self.client_pem(certificate, directory)
            try:
                context = server.client_context(pem)
            finally:
                pem.unlink()
            what = f"renew {certificate}"
            started = time.perf_counter()
            connection = await server.connect(context)
            try:
                answer = await request_json(connection, "POST", "/1.0/renew", {}, what, status=201)
            finally:
                await connection.aclose()
            seconds[what] = time.perf_counter() - started
            chain = _pem_chain(answer, what)
            _certifies(chain, self.key_of(certificate), what)
            if chain[0].serial_number == self.chains[certificate][0].serial_number:
                raise FleetFailure(f"{what}: the same certificate came back")
            self.renewed[certificate] = chain[0]


def prepare(count: int, vendor: Vendor, *, name_prefix: str = "fleet") -> list[FleetDevice]:
    """*count* devices with everything that can be made before the run: an EK (P-256,
    certified by *vendor*), an AK and its creation evidence, the device key with its
    public area and finalize CSR, and one key per account."""
    from agent.enroll import device_csr

    devices = []
    for index in range(count):
        fake = new_device(vendor)
        identifier = permanent_identifier_value(fake.ek.digest)
        device_key = ec.generate_private_key(ec.SECP256R1())
        devices.append(
            FleetDevice(
                index=index,
                name=f"{name_prefix}-{index:06d}",
                fake=fake,
                identifier=identifier,
                device_key=device_key,
                device_public=signing_key_public_area(device_key),
                csr_der=device_csr(device_key, identifier).public_bytes(Encoding.DER),
                account_keys={
                    name: ec.generate_private_key(ec.SECP256R1()) for name in ACCOUNT_NAMES
                },
            )
        )
    return devices


__all__ = [
    "ACCOUNTS",
    "ACCOUNT_NAMES",
    "RENEWED",
    "FleetDevice",
    "FleetFailure",
    "Server",
    "prepare",
    "request_json",
]
