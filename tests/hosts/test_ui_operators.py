"""The operator UI's local accounts (``hosts.service.operators``) over a real database:
argon2id password hashes, TOTP codes accepted once within their window, clear refusals,
and every change in the audit log with who made it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from argon2 import PasswordHasher

from engine.ports import FrozenClock
from hosts.service.audit import Auditor
from hosts.service.operators import OperatorError, Operators
from hosts.store import AuditQuery, Stores, open_sqlite
from plugins.manager import PluginManager

PASSWORD = "correct horse battery"
ACTOR = "cli:alice"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_sqlite(tmp_path / "devid.sqlite")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC))


@pytest.fixture
def operators(stores: Stores, clock: FrozenClock) -> Operators:
    auditor = Auditor(stores.audit, PluginManager(load_entry_points=False), clock)
    return Operators(stores.operators, auditor, clock)


def code(secret: str, clock: FrozenClock, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30 * steps))


def test_an_operator_is_added_with_an_argon2id_hash_and_a_totp_secret(
    operators: Operators, stores: Stores
) -> None:
    enrolment = operators.add(ACTOR, "alice.admin", "admin", PASSWORD)
    stored = stores.operators.get_operator("alice.admin")
    assert stored is not None and stored == enrolment.operator
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert (stored.role, stored.disabled, stored.last_totp_step) == ("admin", False, None)
    uri = urlparse(enrolment.uri)
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/devid:alice.admin")
    query = parse_qs(uri.query)
    assert query["secret"] == [enrolment.secret] == [stored.totp_secret]
    assert query["issuer"] == ["devid"]
    assert [o.username for o in operators.list()] == ["alice.admin"]


def test_the_right_password_and_current_code_sign_in_once(
    operators: Operators, clock: FrozenClock
) -> None:
    secret = operators.add(ACTOR, "bob", "viewer", PASSWORD).secret
    signed_in = operators.verify("bob", PASSWORD, code(secret, clock))
    assert signed_in is not None and signed_in.role == "viewer"
    # The same code again, within its window, is refused; so is the code before it.
    assert operators.verify("bob", PASSWORD, code(secret, clock)) is None
    assert operators.verify("bob", PASSWORD, code(secret, clock, -1)) is None
    # The next step's code is accepted (once), a step either side of now.
    assert operators.verify("bob", PASSWORD, code(secret, clock, 1)) is not None
    assert operators.verify("bob", PASSWORD, code(secret, clock, 1)) is None
    clock.advance(timedelta(minutes=5))
    assert operators.verify("bob", PASSWORD, code(secret, clock)) is not None


def test_a_code_of_the_real_clock_signs_in(stores: Stores) -> None:
    from hosts.core.ports import SystemClock

    clock = SystemClock()
    service = Operators(
        stores.operators,
        Auditor(stores.audit, PluginManager(load_entry_points=False), clock),
        clock,
    )
    secret = service.add(ACTOR, "carol", "operator", PASSWORD).secret
    assert service.verify("carol", PASSWORD, pyotp.TOTP(secret).now()) is not None


def test_wrong_password_wrong_code_far_code_and_unknown_user_are_refused(
    operators: Operators, clock: FrozenClock
) -> None:
    secret = operators.add(ACTOR, "dave", "operator", PASSWORD).secret
    assert operators.verify("dave", "wrong password!", code(secret, clock)) is None
    good = code(secret, clock)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    assert operators.verify("dave", PASSWORD, wrong) is None
    assert operators.verify("dave", PASSWORD, code(secret, clock, 2)) is None
    assert operators.verify("dave", PASSWORD, code(secret, clock, -2)) is None
    assert operators.verify("dave", PASSWORD, "abcdef") is None
    assert operators.verify("nobody", PASSWORD, good) is None
    # A refused password does not use up the code.
    assert operators.verify("dave", PASSWORD, good) is not None


def test_a_disabled_or_removed_operator_cannot_sign_in(
    operators: Operators, stores: Stores, clock: FrozenClock
) -> None:
    import attrs

    secret = operators.add(ACTOR, "erin", "viewer", PASSWORD).secret
    stored = stores.operators.get_operator("erin")
    assert stored is not None
    assert stores.operators.update_operator(attrs.evolve(stored, disabled=True))
    assert operators.verify("erin", PASSWORD, code(secret, clock)) is None
    operators.remove(ACTOR, "erin")
    assert operators.verify("erin", PASSWORD, code(secret, clock)) is None
    assert operators.list() == []


def test_reset_gives_a_new_password_and_a_new_secret(
    operators: Operators, stores: Stores, clock: FrozenClock
) -> None:
    old = operators.add(ACTOR, "frank", "operator", PASSWORD).secret
    assert operators.reset(ACTOR, "frank", password="another long password") is None
    assert operators.verify("frank", PASSWORD, code(old, clock)) is None
    assert operators.verify("frank", "another long password", code(old, clock)) is not None
    enrolment = operators.reset(ACTOR, "frank", totp=True)
    assert enrolment is not None and enrolment.secret != old
    stored = stores.operators.get_operator("frank")
    assert stored is not None and stored.last_totp_step is None
    clock.advance(timedelta(seconds=30))
    assert operators.verify("frank", "another long password", code(old, clock)) is None
    assert operators.verify("frank", "another long password", code(enrolment.secret, clock))


def test_a_hash_of_other_parameters_is_replaced_at_sign_in(
    operators: Operators, stores: Stores, clock: FrozenClock
) -> None:
    import attrs

    secret = operators.add(ACTOR, "gina", "viewer", PASSWORD).secret
    weak = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    stored = stores.operators.get_operator("gina")
    assert stored is not None
    assert stores.operators.update_operator(attrs.evolve(stored, password_hash=weak))
    assert operators.verify("gina", PASSWORD, code(secret, clock)) is not None
    rehashed = stores.operators.get_operator("gina")
    assert rehashed is not None and rehashed.password_hash != weak
    assert rehashed.password_hash.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(rehashed.password_hash)
    assert rehashed.last_totp_step is not None


@pytest.mark.parametrize(
    ("username", "role", "password", "message"),
    [
        ("Alice", "viewer", PASSWORD, "invalid username 'Alice': 1 to 64 characters"),
        ("a" * 65, "viewer", PASSWORD, "lowercase letters, digits, '.', '-' and '_' only"),
        ("", "viewer", PASSWORD, "invalid username ''"),
        ("al ice", "viewer", PASSWORD, "invalid username 'al ice'"),
        ("alice", "root", PASSWORD, "unknown role 'root': one of viewer, operator, admin"),
        ("alice", "viewer", "short pass", "the password is too short (10 characters): at least 12"),
    ],
)
def test_bad_usernames_roles_and_passwords_are_refused_clearly(
    operators: Operators, username: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(OperatorError, match=re.escape(message)):
        operators.add(ACTOR, username, role, password)
    assert operators.list() == []


def test_taken_and_unknown_usernames_are_clear_errors(operators: Operators) -> None:
    operators.add(ACTOR, "hank", "viewer", PASSWORD)
    with pytest.raises(OperatorError, match="an operator named 'hank' already exists"):
        operators.add(ACTOR, "hank", "admin", PASSWORD)
    with pytest.raises(OperatorError, match="no operator named 'ivy'"):
        operators.remove(ACTOR, "ivy")
    with pytest.raises(OperatorError, match="no operator named 'ivy'"):
        operators.reset(ACTOR, "ivy", totp=True)
    with pytest.raises(OperatorError, match="nothing to reset"):
        operators.reset(ACTOR, "hank")
    with pytest.raises(OperatorError, match="too short"):
        operators.reset(ACTOR, "hank", password="short")


def test_every_change_is_audited_with_its_actor(operators: Operators, stores: Stores) -> None:
    operators.add(ACTOR, "jack", "admin", PASSWORD)
    operators.reset("cli:bob", "jack", password="another long password", totp=True)
    operators.remove(ACTOR, "jack")
    events, total = stores.audit.find(AuditQuery(action="ui."))
    assert total == 3
    assert [(e.actor, e.action, e.target, e.result, e.details) for e in reversed(events)] == [
        (ACTOR, "ui.user_added", "jack", "ok", {"role": "admin"}),
        ("cli:bob", "ui.user_reset", "jack", "ok", {"reset": ["password", "totp"]}),
        (ACTOR, "ui.user_removed", "jack", "ok", {}),
    ]
