"""The conformance suite for a provisioner type, run through a real CA.

A plugin author calls :func:`check_provisioner` from a test with a kit CA
(the ``devid_ca`` fixture), the ``[[provisioners]]`` table to check, and a
*minter*: a function that turns a :class:`CredentialRequest` into a credential
of the type (what a client of the plugin would send as ``ott``). The suite
adds the table to the CA, sends credentials through the same operations the
HTTP hosts call, and checks the properties every provisioner type must have.
It returns a :class:`ConformanceReport` and, when a property fails, raises
:class:`ConformanceError` (an AssertionError) naming each failed property and
what happened.

The properties, by name (:data:`CHECKS`; each is a method of
:class:`ProvisionerConformance` with the same name, dashes as underscores):

``loads``
    The table builds a provisioner of a registered :class:`plugins.api.Provisioner`
    subclass, with the table's name and type.
``unknown-options``
    The same table with an option no type has is refused at load
    (ConfigurationError), so a typo in devid.toml stops start-up.
``reads-its-credential``
    ``read_credential`` reads a good credential as addressed to this provisioner,
    and answers None or a ProtocolError (never another exception) for text that is
    not its own.
``issues``
    A good credential issues a certificate for the CSR's key, recorded as issued by
    this provisioner.
``one-time``
    The same credential presented again is refused with 401 (the type returns a
    :class:`plugins.api.TokenUse`, and the CA remembers it).
``replay-window``
    The CA remembers a used credential for as long as the type would accept it: at
    the ``TokenUse.expires_at`` it returned, ``authorize_sign`` refuses it.
``audience``
    A credential for another audience (another CA's URL, or this CA's revoke URL) is
    refused with 401.
``expiry``
    A credential that has expired, or is not valid yet, is refused with 401.
``tampered``
    A good credential with one character of its last part changed is refused (400,
    401 or 403).
``names-outside-policy``
    A credential for names the provisioner's policy does not allow (*outside*) is
    refused with 403.
``names-not-granted``
    A CSR asking for a name the credential did not grant is refused (401 or 403).
``durations``
    A requested lifetime longer than the policy's maximum, or shorter than its
    minimum, is refused with 403; a notBefore beyond its skew with 400.
``public-view``
    ``public_view()`` is JSON, names the provisioner and its type, and shows no secret:
    none of *secrets*, no value of a table option whose name says secret, password,
    passphrase, private or credential, no file a table option names (nor its
    content, for such options and for ``*_file`` ones) and no environment variable a
    ``*_env`` option names.
``refuses-by-default``
    What the type does not override refuses: ``authorize_revoke`` (401, the
    certificate stays active) and ``authorize_renew`` (403) through the CA,
    ``default_config`` (ConfigurationError), ``acme()`` (None).
``default-config``
    When the type overrides ``default_config``, the table it writes loads.
``token-minter``
    When the type says ``mints_tokens``, ``token_minter(password)`` gives a minter
    whose token issues; otherwise it gives None.
``revocation``
    When the type overrides ``authorize_revoke``: a sign credential does not revoke,
    a revoke credential for another serial does not, a revoke credential for the
    serial does (once).
``nothing-stored``
    No refusal above stored a certificate.

Skip a property that does not apply with ``skip={"one-time": "why"}``; the
report lists it as skipped with the reason. A property that cannot say anything
(every refusal is meaningless when nothing issues) is skipped with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from cryptography import x509

from plugins.api import ConfigurationError, ProtocolError, Provisioner

from .keys import csr_der, csr_pem, new_csr, tamper

if TYPE_CHECKING:
    from .ca import Issued, LocalCA

SIGN_PATH = "/1.0/sign"
REVOKE_PATH = "/1.0/revoke"
#: An audience no CA of the kit answers to.
FOREIGN_AUDIENCE = "https://elsewhere.invalid/1.0/sign"
#: The name asked for, and never granted, by ``names-not-granted`` (when *outside* is empty).
UNGRANTED_NAME = "not-granted.example.invalid"
#: Table options whose values are secrets, by a word in their name.
SECRET_WORDS = ("secret", "password", "passphrase", "private", "credential")
#: Text that is no provisioner's credential.
NOT_CREDENTIALS = ("", "garbage", "a.b.c", "..", "{}", "x" * 20_000)

CHECKS: dict[str, str] = {
    "loads": "the table builds a Provisioner of its type",
    "unknown-options": "an unknown option in the table stops loading",
    "reads-its-credential": "read_credential names this provisioner; other text: None or 4xx",
    "issues": "a good credential issues a certificate recorded for this provisioner",
    "one-time": "a used credential is refused (401)",
    "replay-window": "a used credential is remembered for as long as it is accepted",
    "audience": "a credential for another audience is refused (401)",
    "expiry": "an expired or not yet valid credential is refused (401)",
    "tampered": "a changed credential is refused (4xx)",
    "names-outside-policy": "names outside the provisioner's policy are refused (403)",
    "names-not-granted": "a CSR asking for a name the credential did not grant is refused",
    "durations": "lifetimes outside the policy's limits are refused (403, 400 for notBefore)",
    "public-view": "public_view() is JSON, names the provisioner, and shows no secret",
    "refuses-by-default": "what the type does not override refuses",
    "default-config": "the table default_config writes loads",
    "token-minter": "token_minter() matches mints_tokens, and its tokens issue",
    "revocation": "only a revoke credential for the serial revokes, once",
    "nothing-stored": "no refusal stored a certificate",
}


@attrs.frozen
class CredentialRequest:
    """What the suite asks the minter for: a credential of the type under test.

    For ``purpose == "sign"`` the credential grants ``subject`` and ``sans`` (the
    names, the subject first) to the CSR whose DER is ``csr_der``; for ``purpose ==
    "revoke"`` it asks to revoke the certificate whose serial is ``subject`` (decimal,
    as devid's built-in types take it), and ``sans`` is empty. ``audience`` is the URL
    the credential is for, ``now`` the time it is made at (the suite asks for
    credentials made in the past or the future too), ``lifetime`` how long it lives,
    ``jti`` a fresh unique identifier. A minter may ignore what its type has no use
    for, and skip the properties that then do not apply.
    """

    provisioner: str
    subject: str
    sans: tuple[str, ...]
    audience: str
    now: datetime
    lifetime: timedelta
    jti: str
    csr_der: bytes
    purpose: str = "sign"


#: A function from a :class:`CredentialRequest` to the credential text.
Minter = Callable[[CredentialRequest], str]


@attrs.frozen
class CheckResult:
    """One property: ``outcome`` is ``"passed"``, ``"failed"`` or ``"skipped"``."""

    name: str
    outcome: str
    detail: str = ""


@attrs.frozen
class ConformanceReport:
    """What :func:`check_provisioner` found, one :class:`CheckResult` per property."""

    provisioner: str
    type_name: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.outcome == "failed")

    @property
    def skipped(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.outcome == "skipped")

    def outcome(self, name: str) -> str:
        """The outcome of the property *name*."""
        for result in self.results:
            if result.name == name:
                return result.outcome
        raise KeyError(name)

    def __str__(self) -> str:
        lines = [f"provisioner {self.provisioner!r} ({self.type_name or '?'}):"]
        for r in self.results:
            lines.append(f"  {r.outcome:7}  {r.name}" + (f": {r.detail}" if r.detail else ""))
        return "\n".join(lines)


class ConformanceError(AssertionError):
    """A provisioner type failed one or more properties; ``report`` has them all."""

    def __init__(self, report: ConformanceReport) -> None:
        failed = report.failures
        lines = [
            f"provisioner {report.provisioner!r} ({report.type_name or '?'}) fails"
            f" {len(failed)} conformance propert{'y' if len(failed) == 1 else 'ies'}:"
        ]
        lines += [f"- {r.name}: {r.detail}" for r in failed]
        super().__init__("\n".join(lines))
        self.report = report


class _Failed(Exception):
    pass


class _Skipped(Exception):
    pass


def _overrides(cls: type[Provisioner], attribute: str) -> bool:
    """Whether *cls* (or a base below Provisioner) defines *attribute* itself."""
    for klass in cls.__mro__:
        if attribute in vars(klass):
            return klass is not Provisioner
    return False


def _status(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError):
        return f"{exc.http_status} {type(exc).__name__}: {exc.detail}"
    return f"{type(exc).__name__}: {exc}"


def _secret_forms(secret: str | bytes) -> set[str]:
    """*secret* as it might be shown: as text, hex, base64 and base64url."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = {raw.hex(), base64.b64encode(raw).decode().rstrip("=")}
    forms.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    with contextlib.suppress(UnicodeDecodeError):
        forms.add(raw.decode())
    return {f.strip() for f in forms if len(f.strip()) >= 4}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


class ProvisionerConformance:
    """The suite for one provisioner table in one CA; :meth:`run` checks every property.

    Arguments as for :func:`check_provisioner`.
    """

    def __init__(
        self,
        ca: LocalCA,
        table: Mapping[str, Any],
        mint: Minter,
        *,
        names: Sequence[str],
        outside: Sequence[str] = (),
        secrets: Sequence[str | bytes] = (),
        skip: Mapping[str, str] | None = None,
    ) -> None:
        if not names:
            raise ValueError("names: give at least one name the provisioner allows")
        unknown = sorted(set(skip or {}) - set(CHECKS))
        if unknown:
            raise ValueError(f"skip: no such properties {unknown}; they are {sorted(CHECKS)}")
        self.ca = ca
        self.table = dict(table)
        self.name = str(table.get("name", ""))
        self.type_name = str(table.get("type", ""))
        self.mint = mint
        self.names = tuple(names)
        self.outside = tuple(outside)
        self.secrets = tuple(secrets)
        self.skip = dict(skip or {})
        self.provisioner: Provisioner | None = None
        self.issued: Issued | None = None
        self.good: tuple[str, str] | None = None
        self._stored_on_refusal: list[str] = []

    # --- running ---------------------------------------------------------------------------

    def run(self) -> ConformanceReport:
        """Check every property in turn and report them all."""
        results = []
        for name in CHECKS:
            if name in self.skip:
                results.append(CheckResult(name, "skipped", self.skip[name]))
                continue
            method = getattr(self, name.replace("-", "_"))
            try:
                detail = method()
            except _Skipped as exc:
                results.append(CheckResult(name, "skipped", str(exc)))
            except _Failed as exc:
                results.append(CheckResult(name, "failed", str(exc)))
            except Exception as exc:
                results.append(CheckResult(name, "failed", f"the check raised {_status(exc)}"))
            else:
                results.append(CheckResult(name, "passed", detail or ""))
        return ConformanceReport(self.name, self.type_name, tuple(results))

    # --- helpers ----------------------------------------------------------------------------

    def _loaded(self) -> Provisioner:
        if self.provisioner is None:
            raise _Skipped("the provisioner did not load")
        return self.provisioner

    def _issuing(self) -> Issued:
        self._loaded()
        if self.issued is None:
            raise _Skipped("a good credential did not issue, so a refusal would prove nothing")
        return self.issued

    def credential(
        self,
        names: Sequence[str] | None = None,
        *,
        csr: str | None = None,
        audience: str | None = None,
        now: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        purpose: str = "sign",
        subject: str | None = None,
    ) -> tuple[str, str]:
        """A fresh credential from the minter, and the PEM CSR it is for."""
        granted = tuple(names if names is not None else self.names)
        csr_pem = csr if csr is not None else new_csr(list(granted))[1]
        path = REVOKE_PATH if purpose == "revoke" else SIGN_PATH
        request = CredentialRequest(
            provisioner=self.name,
            subject=subject if subject is not None else granted[0],
            sans=() if purpose == "revoke" else granted,
            audience=audience if audience is not None else self.ca.audience(path),
            now=now if now is not None else self.ca.now(),
            lifetime=lifetime,
            jti=uuid.uuid4().hex,
            csr_der=csr_der(csr_pem),
            purpose=purpose,
        )
        try:
            text = self.mint(request)
        except Exception as exc:
            raise _Failed(f"the minter raised {_status(exc)} for {request}") from None
        if not isinstance(text, str):
            raise _Failed(f"the minter returned {type(text).__name__}, not the credential text")
        return text, csr_pem

    def refused(self, what: str, action: Callable[[], object], statuses: Iterable[int]) -> str:
        """Run *action*, which must be refused with one of *statuses* and store nothing."""
        wanted = sorted(set(statuses))
        before = self.ca.certificate_count()
        try:
            action()
        except ProtocolError as exc:
            stored = self.ca.certificate_count() != before
            if stored:
                self._stored_on_refusal.append(what)
                raise _Failed(
                    f"{what} was refused ({_status(exc)}) but a certificate was stored"
                ) from None
            if exc.http_status not in wanted:
                raise _Failed(
                    f"{what} was refused with {_status(exc)}; expected"
                    f" {' or '.join(map(str, wanted))}"
                ) from None
            return f"{exc.http_status} {exc.detail}"
        except Exception as exc:
            raise _Failed(f"{what} raised {_status(exc)} (a 500 at the CA)") from None
        raise _Failed(f"{what} was accepted")

    def sign(self, credential: str, csr: str, **bounds: Any) -> Issued:
        return self.ca.sign(csr, credential, **bounds)

    # --- the properties ------------------------------------------------------------------

    def loads(self) -> str:
        """The table builds a provisioner of a registered Provisioner subclass."""
        existing = self.ca.provisioner_table(self.name)
        try:
            if existing is None:
                provisioner = self.ca.add_provisioner(self.table)
            else:
                provisioner = self.ca.provisioner(self.name)
        except ConfigurationError as exc:
            raise _Failed(f"the table does not load: {exc}") from None
        cls = type(provisioner)
        if not isinstance(provisioner, Provisioner):
            raise _Failed(f"{cls.__qualname__} is not a plugins.api.Provisioner")
        if cls.type_name.upper() != self.type_name.upper():
            raise _Failed(f"type {self.type_name!r} built a {cls.type_name!r} provisioner")
        if provisioner.name != self.name:
            raise _Failed(f"the table named {self.name!r} built {provisioner.name!r}")
        self.provisioner = provisioner
        self.type_name = cls.type_name
        return f"{cls.__module__}.{cls.__qualname__}"

    def unknown_options(self) -> str:
        """A misspelt option stops loading (Options.finish())."""
        self._loaded()
        name = f"{self.name}-with-a-typo"
        table = {**self.table, "name": name, "no_such_option_anywhere": True}
        try:
            self.ca.add_provisioner(table)
        except ConfigurationError as exc:
            return str(exc)
        self.ca.remove_provisioner(name)
        raise _Failed("a table with the option 'no_such_option_anywhere' loaded")

    def reads_its_credential(self) -> str:
        """read_credential addresses good credentials here and refuses other text cleanly."""
        cls = type(self._loaded())
        good, _ = self.credential()
        try:
            reading = cls.read_credential(good)
        except Exception as exc:
            raise _Failed(f"read_credential raised {_status(exc)} for a good credential") from None
        if reading is None:
            raise _Failed("read_credential does not read a good credential (None)")
        if reading.provisioner != self.name:
            raise _Failed(f"a good credential is read as addressed to {reading.provisioner!r}")
        for text in NOT_CREDENTIALS:
            try:
                cls.read_credential(text)
            except ProtocolError:
                pass
            except Exception as exc:
                raise _Failed(
                    f"read_credential({text[:20]!r}) raised {_status(exc)} (a 500 at the CA)"
                ) from None
        return ""

    def issues(self) -> str:
        """A good credential issues a certificate for the CSR's key, recorded as ours."""
        provisioner = self._loaded()
        good, csr = self.credential()
        try:
            issued = self.sign(good, csr)
        except Exception as exc:
            raise _Failed(f"a good credential was refused: {_status(exc)}") from None
        record = self.ca.certificate(issued.serial)
        if record is None:
            raise _Failed("the certificate was not stored")
        if (record.provisioner_type, record.provisioner_name) != (
            provisioner.certificate_ref.type,
            provisioner.certificate_ref.name,
        ):
            raise _Failed(
                f"the certificate is recorded for {record.provisioner_type}"
                f" {record.provisioner_name!r}"
            )
        csr_key = x509.load_pem_x509_csr(csr.encode()).public_key()
        if issued.certificate.public_key() != csr_key:
            raise _Failed("the certificate is not for the CSR's key")
        self.issued, self.good = issued, (good, csr)
        return f"serial {issued.serial_hex}"

    def one_time(self) -> str:
        """The credential that issued is refused the second time (401)."""
        self._issuing()
        assert self.good is not None
        good, csr = self.good
        return self.refused(
            "the same credential a second time", lambda: self.sign(good, csr), {401}
        )

    def replay_window(self) -> str:
        """At the TokenUse's expires_at the credential is no longer accepted."""
        self._issuing()
        if "one-time" in self.skip:
            raise _Skipped("one-time use is not claimed")
        good, csr = self.credential()
        authorization = self.ca.authorize(good, csr)
        use = authorization.token
        if use is None:
            raise _Failed("authorize_sign returned no TokenUse: the CA cannot remember the use")
        if use.provisioner != self.name:
            raise _Failed(f"the TokenUse names provisioner {use.provisioner!r}")
        later = use.expires_at + timedelta(seconds=1)
        try:
            self.ca.authorize(good, csr, now=later)
        except ProtocolError:
            return f"remembered until {use.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        raise _Failed(
            f"the CA forgets the used credential at {use.expires_at:%Y-%m-%dT%H:%M:%SZ}"
            " (TokenUse.expires_at), but it is still accepted a second later: it can be"
            " replayed then (use check_registered_claims' replay_until)"
        )

    def audience(self) -> str:
        """Credentials for another CA, or for this CA's revoke endpoint, do not sign."""
        self._issuing()
        foreign, csr = self.credential(audience=FOREIGN_AUDIENCE)
        first = self.refused(
            f"a credential for {FOREIGN_AUDIENCE}", lambda: self.sign(foreign, csr), {401}
        )
        revoke, csr2 = self.credential(audience=self.ca.audience(REVOKE_PATH))
        second = self.refused(
            "a sign credential for the revoke endpoint", lambda: self.sign(revoke, csr2), {401}
        )
        return f"{first}; {second}"

    def expiry(self) -> str:
        """Expired and not-yet-valid credentials are refused (401)."""
        self._issuing()
        past = self.ca.now() - timedelta(days=1)
        old, csr = self.credential(now=past)
        first = self.refused(
            "a credential that expired a day ago", lambda: self.sign(old, csr), {401}
        )
        future = self.ca.now() + timedelta(days=1)
        early, csr2 = self.credential(now=future)
        second = self.refused(
            "a credential valid from tomorrow", lambda: self.sign(early, csr2), {401}
        )
        return f"{first}; {second}"

    def tampered(self) -> str:
        """A credential with one character changed is refused."""
        self._issuing()
        good, csr = self.credential()
        changed = tamper(good)
        return self.refused(
            "a credential with one character changed",
            lambda: self.sign(changed, csr),
            {400, 401, 403},
        )

    def names_outside_policy(self) -> str:
        """Names the policy does not allow are refused (403), each on its own."""
        self._issuing()
        if not self.outside:
            raise _Skipped("no names outside the policy were given (outside=...)")
        details = []
        for name in self.outside:
            credential, csr = self.credential([name])
            details.append(
                self.refused(
                    f"a credential for {name!r} (outside the policy)",
                    functools.partial(self.sign, credential, csr),
                    {403},
                )
            )
        return "; ".join(details)

    def names_not_granted(self) -> str:
        """A CSR with one more name than the credential grants is refused."""
        self._issuing()
        extra = self.outside[0] if self.outside else UNGRANTED_NAME
        csr = new_csr([*self.names, extra])[1]
        credential, _ = self.credential(csr=csr)
        return self.refused(
            f"a CSR that also asks for {extra!r}", lambda: self.sign(credential, csr), {401, 403}
        )

    def durations(self) -> str:
        """Lifetimes beyond the policy's limits are refused; notBefore within its skew."""
        self._issuing()
        good, csr = self.credential()
        policy = self.ca.authorize(good, csr).policy
        if policy is None:
            raise _Failed("authorize_sign returned no sign policy")
        limits = policy.durations
        too_long = limits.maximum + timedelta(hours=1)
        credential, csr = self.credential()
        details = [
            self.refused(
                f"a lifetime of {too_long} (maximum {limits.maximum})",
                lambda: self.sign(credential, csr, not_after=too_long),
                {403},
            )
        ]
        if limits.minimum >= timedelta(seconds=2):
            too_short = limits.minimum / 2
            short_credential, short_csr = self.credential()
            details.append(
                self.refused(
                    f"a lifetime of {too_short} (minimum {limits.minimum})",
                    lambda: self.sign(short_credential, short_csr, not_after=too_short),
                    {403},
                )
            )
        start = self.ca.now() + limits.skew + timedelta(hours=1)
        late_credential, late_csr = self.credential()
        details.append(
            self.refused(
                f"a notBefore {limits.skew + timedelta(hours=1)} ahead (skew {limits.skew})",
                lambda: self.sign(
                    late_credential,
                    late_csr,
                    not_before=start,
                    not_after=start + limits.default,
                ),
                {400},
            )
        )
        return "; ".join(details)

    def _named_file(self, text: str) -> bytes | None:
        """The content of the file *text* names (absolute or relative to the data
        directory), if it is a small file; None if it names none."""
        if not text or len(text) > 1024:
            return None
        path = Path(text) if Path(text).is_absolute() else self.ca.data_dir / text
        try:
            if not path.is_file() or path.stat().st_size > 65536:
                return None
            return path.read_bytes()
        except (OSError, ValueError):  # unreadable, or no file name at all ("a\0b")
            return None

    def _secrets_in_table(self) -> tuple[list[str | bytes], list[str]]:
        """Secret values and file paths the table holds or names."""
        secrets: list[str | bytes] = list(self.secrets)
        paths: list[str] = []

        def walk(table: Mapping[str, Any]) -> None:
            for key, value in table.items():
                lowered = str(key).lower()
                secret_key = any(word in lowered for word in SECRET_WORDS)
                if isinstance(value, Mapping):
                    walk(value)
                    continue
                for text in _strings(value):
                    if secret_key:
                        secrets.append(text)
                    if lowered.endswith("_env") and os.environ.get(text):
                        secrets.append(os.environ[text])
                    content = self._named_file(text)
                    if content is not None:
                        paths.append(text)
                        if secret_key or lowered.endswith("_file"):
                            secrets.append(content)

        walk(self.table)
        return secrets, paths

    def public_view(self) -> str:
        """public_view() is JSON, names the provisioner, and holds no secret or path."""
        provisioner = self._loaded()
        view = provisioner.public_view()
        try:
            shown = json.dumps(view)
        except (TypeError, ValueError) as exc:
            raise _Failed(f"public_view() is not JSON: {exc}") from None
        if view.get("name") != self.name or view.get("type") != self.type_name:
            raise _Failed(f"public_view() does not name the provisioner and its type: {view}")
        if view not in self.ca.provisioners_view():
            raise _Failed("GET /provisioners does not show the public view")
        text = shown + "\n" + repr(view)
        secrets, paths = self._secrets_in_table()
        for secret in secrets:
            for form in _secret_forms(secret):
                if form in text:
                    raise _Failed(f"public_view() shows a secret ({form[:4]}...): {view}")
        for path in paths:
            if path in text:
                raise _Failed(f"public_view() shows the file path {path!r}")
        return f"{len(secrets)} secret(s) and {len(paths)} path(s) looked for"

    def refuses_by_default(self) -> str:
        """Each method the type does not override refuses, through the CA where it can."""
        provisioner = self._loaded()
        cls = type(provisioner)
        checked = []
        if not _overrides(cls, "authorize_revoke"):
            issued = self._issuing()
            good, _ = self.credential()
            self.refused(
                "revoking with a credential (authorize_revoke not overridden)",
                lambda: self.ca.revoke(issued.serial, good),
                {401},
            )
            record = self.ca.certificate(issued.serial)
            if record is None or record.status != "active":
                raise _Failed("a refused revocation revoked the certificate")
            checked.append("authorize_revoke refuses (401)")
        if not _overrides(cls, "authorize_renew"):
            issued = self._issuing()
            self.refused(
                "renewing (authorize_renew not overridden)",
                lambda: self.ca.renew(issued.certificate),
                {403},
            )
            checked.append("authorize_renew refuses (403)")
        if not _overrides(cls, "default_config"):
            try:
                cls.default_config(f"{self.name}-default", self.ca.environment())
            except ConfigurationError:
                checked.append("default_config refuses")
            else:
                raise _Failed("default_config() is not overridden but did not refuse")
        if not _overrides(cls, "acme"):
            if provisioner.acme() is not None:
                raise _Failed("acme() is not overridden but returned a directory")
            checked.append("acme() is None")
        return "; ".join(checked) if checked else "the type overrides them all"

    def default_config(self) -> str:
        """The table default_config writes is one the CA loads."""
        cls = type(self._loaded())
        if not _overrides(cls, "default_config"):
            raise _Skipped("default_config is not overridden (refuses-by-default checks it)")
        name = f"{self.name}-default"
        try:
            table = cls.default_config(name, self.ca.environment())
        except ConfigurationError as exc:
            return f"refuses: {exc}"
        try:
            self.ca.add_provisioner(table)
        except ConfigurationError as exc:
            raise _Failed(f"the table default_config() writes does not load: {exc}") from None
        self.ca.remove_provisioner(name)
        return ""

    def token_minter(self) -> str:
        """token_minter() agrees with mints_tokens, and what it mints issues."""
        provisioner = self._loaded()
        cls = type(provisioner)
        try:
            minter = provisioner.token_minter(self.ca.password)
        except ConfigurationError as exc:
            if cls.mints_tokens:
                raise _Skipped(f"no key to mint with on this host: {exc}") from None
            raise _Failed(f"token_minter() raised {exc} (mints_tokens is False)") from None
        if not cls.mints_tokens:
            if minter is not None:
                raise _Failed("token_minter() gave a minter but mints_tokens is False")
            return "mints no tokens"
        if minter is None:
            raise _Failed("mints_tokens is True but token_minter() gave None")
        csr = csr_pem(list(self.names))
        token = minter.mint(
            subject=self.names[0],
            audience=self.ca.audience(SIGN_PATH),
            now=self.ca.now(),
            jti=uuid.uuid4().hex,
            sans=self.names,
        )
        try:
            issued = self.sign(token, csr)
        except ProtocolError as exc:
            raise _Failed(f"a token from token_minter() was refused: {_status(exc)}") from None
        return f"serial {issued.serial_hex}"

    def revocation(self) -> str:
        """Revoke credentials revoke their serial only, once; sign credentials do not."""
        provisioner = self._loaded()
        if not _overrides(type(provisioner), "authorize_revoke"):
            raise _Skipped("authorize_revoke is not overridden (refuses-by-default checks it)")
        self._issuing()
        good, csr = self.credential()
        issued = self.sign(good, csr)
        serial = issued.serial
        sign_credential, _ = self.credential()
        self.refused(
            "revoking with a sign credential",
            lambda: self.ca.revoke(serial, sign_credential),
            {400, 401, 403},
        )
        other, _ = self.credential(purpose="revoke", subject=str(serial + 1))
        self.refused(
            "revoking with a revoke credential for another serial",
            lambda: self.ca.revoke(serial, other),
            {400, 401, 403},
        )
        record = self.ca.certificate(serial)
        if record is None or record.status != "active":
            raise _Failed("a refused revocation revoked the certificate")
        revoke, _ = self.credential(purpose="revoke", subject=str(serial))
        try:
            self.ca.revoke(serial, revoke)
        except ProtocolError as exc:
            raise _Failed(
                f"a revoke credential for the serial was refused: {_status(exc)}"
            ) from None
        record = self.ca.certificate(serial)
        if record is None or record.status != "revoked":
            raise _Failed("a revoke credential was accepted but the certificate is not revoked")
        if "one-time" not in self.skip:
            self.refused(
                "the same revoke credential again", lambda: self.ca.revoke(serial, revoke), {401}
            )
        return f"serial {issued.serial_hex} revoked"

    def nothing_stored(self) -> str:
        """No refusal above left a certificate in the store."""
        if self._stored_on_refusal:
            raise _Failed("a certificate was stored although " + "; ".join(self._stored_on_refusal))
        return ""


def check_provisioner(
    ca: LocalCA,
    table: Mapping[str, Any],
    mint: Minter,
    *,
    names: Sequence[str],
    outside: Sequence[str] = (),
    secrets: Sequence[str | bytes] = (),
    skip: Mapping[str, str] | None = None,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Check a provisioner type through *ca* (a :class:`hosts.testing.ca.LocalCA`, the
    ``devid_ca`` fixture) with the ``[[provisioners]]`` *table* and the credentials
    *mint* makes.

    *names* are names the provisioner allows (the subject first); *outside* names its
    policy refuses; *secrets* values that must never be shown (the table's own secret
    options, files and variables are found by themselves). *skip* maps a property
    that does not apply to the reason. The table is added to the CA unless a
    provisioner of that name is already configured.

    Returns the :class:`ConformanceReport`; raises :class:`ConformanceError` (an
    AssertionError naming each failed property) when one failed, unless
    *raise_on_failure* is False. ``PYTEST_ADDOPTS=-rA`` or ``print(report)`` shows
    every property's outcome.
    """
    report = ProvisionerConformance(
        ca, table, mint, names=names, outside=outside, secrets=secrets, skip=skip
    ).run()
    if raise_on_failure and not report.passed:
        raise ConformanceError(report)
    return report


__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceError",
    "ConformanceReport",
    "CredentialRequest",
    "Minter",
    "ProvisionerConformance",
    "check_provisioner",
]
