"""The operator UI's local accounts: adding, removing and resetting operators, and
checking a sign-in (password, then a TOTP code).

Passwords are hashed with argon2id (argon2-cffi's default parameters); a hash made with
other parameters is replaced by a new one at the next good sign-in. The second factor is
TOTP (RFC 6238: 30-second steps, 6 digits, a code of the step before or after now is
accepted too); a code is accepted once: the step of the last code accepted is kept per
operator, and a code of that step or an earlier one is refused. Every change is written
to the audit log with who made it (``ui.user_added``, ``ui.user_removed``,
``ui.user_reset``).
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections.abc import Sequence

import attrs
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.errors import DevidError
from engine.ports import Clock
from hosts.store import ROLES, Operator, OperatorStore

from .audit import Auditor

#: The audit log's actions.
USER_ADDED = "ui.user_added"
USER_REMOVED = "ui.user_removed"
USER_RESET = "ui.user_reset"

USERNAME = re.compile(r"[a-z0-9._-]{1,64}")
MIN_PASSWORD = 12
#: TOTP as RFC 6238 and the authenticator apps have it.
TOTP_STEP = 30
TOTP_DIGITS = 6
#: Steps accepted either side of now (a clock a little off, a code typed as it changed).
TOTP_WINDOW = 1
#: The issuer an authenticator app shows beside the username.
TOTP_ISSUER = "devid"


class OperatorError(DevidError):
    """An operator account cannot be changed as asked; the message says why."""


@attrs.frozen
class Enrolment:
    """A new TOTP secret, shown once: to be added to the operator's authenticator app."""

    operator: Operator
    secret: str
    uri: str


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise OperatorError(
            f"invalid username {username!r}: 1 to 64 characters, lowercase letters, digits,"
            " '.', '-' and '_' only"
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(
            f"the password is too short ({len(password)} characters): at least"
            f" {MIN_PASSWORD} are needed"
        )
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise OperatorError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


class Operators:
    """The operator accounts over their store; changes are audited as *actor*'s."""

    def __init__(
        self,
        store: OperatorStore,
        auditor: Auditor,
        clock: Clock,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.store = store
        self.auditor = auditor
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        # Verified against when the username is unknown, so that the answer takes as
        # long as for a wrong password (made at the first such sign-in).
        self._absent: str | None = None

    def _enrolment(self, operator: Operator) -> Enrolment:
        uri = _totp(operator.totp_secret).provisioning_uri(
            name=operator.username, issuer_name=TOTP_ISSUER
        )
        return Enrolment(operator, operator.totp_secret, uri)

    def _existing(self, username: str) -> Operator:
        operator = self.store.get_operator(username)
        if operator is None:
            raise OperatorError(f"no operator named {username!r} (`devid ui user list` shows them)")
        return operator

    def add(self, actor: str, username: str, role: str, password: str) -> Enrolment:
        """A new operator with a new TOTP secret; OperatorError if the username, role or
        password is not acceptable or the username is taken."""
        check_username(username)
        check_role(role)
        check_password(password)
        now = self.clock.now()
        operator = Operator(
            username=username,
            role=role,
            password_hash=self.hasher.hash(password),
            totp_secret=pyotp.random_base32(),
            created_at=now,
            updated_at=now,
        )
        if not self.store.add_operator(operator):
            raise OperatorError(f"an operator named {username!r} already exists")
        self.auditor.record(actor, USER_ADDED, username, role=role)
        return self._enrolment(operator)

    def remove(self, actor: str, username: str) -> None:
        if not self.store.delete_operator(username):
            raise OperatorError(f"no operator named {username!r} (`devid ui user list` shows them)")
        self.auditor.record(actor, USER_REMOVED, username)

    def reset(
        self, actor: str, username: str, *, password: str | None = None, totp: bool = False
    ) -> Enrolment | None:
        """A new password, a new TOTP secret, or both; the enrolment of the new secret if
        there is one."""
        if password is None and not totp:
            raise OperatorError("nothing to reset: a new password, a new TOTP secret or both")
        if password is not None:
            check_password(password)
        operator = self._existing(username)
        changes = attrs.evolve(operator, updated_at=self.clock.now())
        if password is not None:
            changes = attrs.evolve(changes, password_hash=self.hasher.hash(password))
        if totp:
            changes = attrs.evolve(changes, totp_secret=pyotp.random_base32(), last_totp_step=None)
        if not self.store.update_operator(changes):
            raise OperatorError(f"operator {username!r} was removed meanwhile")
        reset = [w for w, done in (("password", password is not None), ("totp", totp)) if done]
        self.auditor.record(actor, USER_RESET, username, reset=reset)
        return self._enrolment(changes) if totp else None

    def list(self) -> Sequence[Operator]:
        return self.store.list_operators()

    def verify(self, username: str, password: str, code: str) -> Operator | None:
        """The operator if *password* is theirs and *code* is a TOTP code of now not used
        before, the operator not disabled; None otherwise (which of them failed is not
        told)."""
        operator = self.store.get_operator(username)
        if operator is None:
            if self._absent is None:
                self._absent = self.hasher.hash("no such operator, never a password")
            with contextlib.suppress(VerificationError):
                self.hasher.verify(self._absent, password)
            return None
        try:
            self.hasher.verify(operator.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if operator.disabled:
            return None
        step = self._totp_step(operator.totp_secret, code)
        if step is None or not self.store.use_totp_step(username, step):
            return None
        if self.hasher.check_needs_rehash(operator.password_hash):
            rehashed = attrs.evolve(
                operator,
                password_hash=self.hasher.hash(password),
                updated_at=self.clock.now(),
            )
            self.store.update_operator(rehashed)
            operator = rehashed
        return attrs.evolve(operator, last_totp_step=step)

    def _totp_step(self, secret: str, code: str) -> int | None:
        """The time step, within the window around now, whose code *code* is."""
        code = code.strip().replace(" ", "")
        if len(code) != TOTP_DIGITS or not code.isdigit():
            return None
        now = int(self.clock.now().timestamp()) // TOTP_STEP
        totp = _totp(secret)
        found = None
        for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):
            if hmac.compare_digest(totp.at(step * TOTP_STEP), code):
                found = step
        return found


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
