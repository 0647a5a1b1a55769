"""The names a person's certificate carries, made from the claims of their ID token.

A provisioner's ``names`` list holds, in order:

- ``"email"``: the token's ``email`` as an email SAN (only once the provider says it
  verified it: ``email_verified`` is true);
- ``"subject"``: a URI SAN for the person's ``sub``, scoped by the provider that assigned
  it: ``ISSUER#SUB`` (the subject percent-encoded), unique across providers;
- a template ``KIND:TEXT``, KIND one of ``dns``, ``email``, ``uri``: TEXT with
  ``{claim}`` placeholders for string claims of the token, and ``{email_local}`` and
  ``{email_domain}`` for the parts of the verified email. In ``uri`` templates the values
  are percent-encoded; in ``dns`` templates they must form valid labels.

A name whose claims the token lacks is left out; a name that would be malformed is
refused. The common name is ``common_name`` rendered the same way (default
``{email}``), else the ``sub``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import attrs

from engine.errors import BadRequest, ConfigurationError, Forbidden
from engine.names import SAN, SANKind

KEYWORDS = ("email", "subject")
TEMPLATE_KINDS = {"dns": SANKind.DNS, "email": SANKind.EMAIL, "uri": SANKind.URI}
DERIVED = ("email_local", "email_domain")
MAX_NAMES = 20
MAX_VALUE_LENGTH = 256
MAX_COMMON_NAME = 64  # ub-common-name (RFC 5280)


def is_text(value: str) -> bool:
    """*value* is Unicode text (JSON's escapes can make lone surrogates, which are not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def fields_of(text: str, where: str) -> tuple[str, ...]:
    """The placeholders of a template; refuses anything but plain ``{claim}`` fields."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigurationError(f"{where}: template {text!r}: {exc}") from None
    fields = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field or spec or conversion or not field.replace("_", "a").isalnum():
            raise ConfigurationError(
                f"{where}: template {text!r}: write placeholders as {{claim}}"
                " (a claim name; no format, index or attribute)"
            )
        fields.append(field)
    return tuple(fields)


@attrs.frozen
class NameTemplate:
    """One entry of ``names``: a keyword, or a kind and a template."""

    kind: str  # "email", "subject", or a template's SAN kind ("dns", "email", "uri")
    text: str = ""
    fields: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entry: Any, where: str) -> NameTemplate:
        if not isinstance(entry, str) or not entry:
            raise ConfigurationError(f"{where}: every entry of names must be a string")
        if entry in KEYWORDS:
            return cls(kind=entry)
        kind, sep, text = entry.partition(":")
        if not sep or kind not in TEMPLATE_KINDS or not text:
            raise ConfigurationError(
                f"{where}: names entry {entry!r} is neither email, subject nor a template"
                " dns:TEXT, email:TEXT or uri:TEXT"
            )
        fields = fields_of(text, where)
        if not fields:
            raise ConfigurationError(
                f"{where}: names entry {entry!r} has no {{claim}} placeholder; a fixed name"
                " would go to everyone"
            )
        return cls(kind=kind, text=text, fields=fields)

    @property
    def uses_email(self) -> bool:
        return (self.kind == "email" and not self.text) or any(
            f == "email" or f in DERIVED for f in self.fields
        )

    def __str__(self) -> str:
        return f"{self.kind}:{self.text}" if self.text else self.kind


@attrs.frozen
class Identity:
    """The claims of a verified ID token that names are made from."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    # The email address, once the checks let it name the person (None otherwise).
    email: str | None

    def value(self, field: str) -> str | None:
        """A placeholder's value: a derived email part or a string claim; None if absent.
        An email claim the checks did not accept is absent here."""
        if field == "email":
            return self.email
        if field in DERIVED:
            if self.email is None:
                return None
            local, _, domain = self.email.rpartition("@")
            return local if field == "email_local" else domain
        value = self.claims.get(field)
        if isinstance(value, str) and value and len(value) <= MAX_VALUE_LENGTH and is_text(value):
            return value
        return None

    def subject_uri(self) -> str:
        return f"{self.issuer}#{quote(self.subject, safe='')}"


def render(template: NameTemplate, identity: Identity) -> SAN | None:
    """The SAN *template* gives for *identity*; None when a claim it needs is absent."""
    if template.kind == "email" and not template.text:
        return SAN(SANKind.EMAIL, identity.email) if identity.email else None
    if template.kind == "subject":
        return SAN(SANKind.URI, identity.subject_uri())
    values: dict[str, str] = {}
    for field in template.fields:
        value = identity.value(field)
        if value is None:
            return None
        values[field] = quote(value, safe="@") if template.kind == "uri" else value
    text = template.text.format_map(values)
    try:
        san = SAN.parse(text)
    except BadRequest as exc:
        raise Forbidden(
            f"the name template {template} gives an invalid name: {exc.detail}"
        ) from None
    if san.kind is not TEMPLATE_KINDS[template.kind]:
        raise Forbidden(
            f"the name template {template} gives {text!r}, which is no {template.kind} name"
        )
    return san


def identity_names(templates: Sequence[NameTemplate], identity: Identity) -> tuple[SAN, ...]:
    """Every name *templates* give for *identity*, in order, without repeats."""
    names: list[SAN] = []
    for template in templates:
        san = render(template, identity)
        if san is not None and san not in names:
            names.append(san)
    return tuple(names[:MAX_NAMES])


def common_name(template: str | None, identity: Identity) -> str | None:
    """The common name: *template* rendered (default ``{email}``), else the ``sub``; None
    when that is longer than a common name may be (64 characters): the SANs name the
    person then."""
    text = template or "{email}"
    values: dict[str, str] = {}
    rendered: str | None = None
    for field in fields_of(text, "common_name"):
        value = identity.value(field)
        if value is None:
            rendered = identity.subject
            break
        values[field] = value
    if rendered is None:
        rendered = text.format_map(values)
    return rendered if 0 < len(rendered) <= MAX_COMMON_NAME else None
