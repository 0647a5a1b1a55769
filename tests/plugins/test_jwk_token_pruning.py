"""One-time tokens: used IDs are kept while the token could still be accepted, then pruned.

step-ca's used-token table grows forever; devid prunes it, and pruning must
never reopen a replay window (SECURITY.md, "Replay stores expire and are pruned").
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.errors import Unauthorized
from engine.ports import FrozenClock
from hosts.core.authority import Authority
from hosts.store import TokenStore, open_sqlite
from hosts.store.sqlite import tokens as sqlite_tokens
from plugins.tokens import LEEWAY
from tests.conftest import CA, TokenFactory, make_token_factory, new_csr, provisioner_of, sign_json

T0 = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TokenStore]:
    stores = open_sqlite(tmp_path / "tokens.sqlite", synchronous="normal")
    yield stores.tokens
    stores.close()


@pytest.fixture
def frozen_token(frozen_authority: Authority, ca: CA, clock: FrozenClock) -> TokenFactory:
    """Tokens minted at the frozen clock's time for the frozen authority."""
    key = provisioner_of(frozen_authority).load_private_key(ca.password)
    return make_token_factory(key, "https://ca.test", clock.now)


# --- the store -----------------------------------------------------------------------------


def test_a_token_id_can_be_used_once_per_provisioner(store: TokenStore) -> None:
    assert store.use_token("admin", "t1", T0 + timedelta(minutes=5), T0)
    assert not store.use_token("admin", "t1", T0 + timedelta(minutes=5), T0)
    assert store.use_token("other", "t1", T0 + timedelta(minutes=5), T0)


def test_prune_forgets_only_tokens_that_have_expired(store: TokenStore) -> None:
    store.use_token("admin", "short", T0 + timedelta(minutes=1), T0)
    store.use_token("admin", "long", T0 + timedelta(minutes=10), T0)
    assert store.prune_tokens(T0) == 0
    assert store.prune_tokens(T0 + timedelta(minutes=2)) == 1
    assert store.count_used_tokens() == 1
    assert not store.use_token("admin", "long", T0 + timedelta(minutes=10), T0)


def test_use_token_prunes_expired_tokens_periodically(
    store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_tokens, "PRUNE_EVERY", 3)
    store.use_token("admin", "a", T0 + timedelta(minutes=1), T0)
    store.use_token("admin", "b", T0 + timedelta(minutes=1), T0)
    assert store.count_used_tokens() == 2
    later = T0 + timedelta(hours=1)
    store.use_token("admin", "c", later + timedelta(minutes=5), later)  # third write prunes
    assert store.count_used_tokens() == 1


# --- through the authority ---------------------------------------------------------------------


def test_used_tokens_are_pruned_after_they_expire(
    frozen_authority: Authority, frozen_token: TokenFactory, clock: FrozenClock
) -> None:
    sign_json(frozen_authority, {"csr": new_csr()[2], "ott": frozen_token()})
    assert frozen_authority.stores.tokens.count_used_tokens() == 1
    clock.advance(timedelta(hours=1))
    assert frozen_authority.stores.tokens.prune_tokens(clock.now()) == 1
    assert frozen_authority.stores.tokens.count_used_tokens() == 0


def test_token_pruned_after_expiry_still_cannot_be_replayed_because_it_expired(
    frozen_authority: Authority, frozen_token: TokenFactory, clock: FrozenClock
) -> None:
    ott = frozen_token()
    sign_json(frozen_authority, {"csr": new_csr()[2], "ott": ott})
    clock.advance(timedelta(minutes=5) + LEEWAY + timedelta(seconds=1))
    frozen_authority.stores.tokens.prune_tokens(clock.now())
    with pytest.raises(Unauthorized, match="expired"):
        sign_json(frozen_authority, {"csr": new_csr()[2], "ott": ott})
    assert frozen_authority.stores.certificates.count_certificates() == 1


def test_token_inside_the_expiry_leeway_is_still_remembered_after_pruning(
    frozen_authority: Authority, frozen_token: TokenFactory, clock: FrozenClock
) -> None:
    # Past exp but within the clock-skew leeway the token still verifies, so pruning
    # at this moment must not forget it, or it could be replayed.
    ott = frozen_token()
    sign_json(frozen_authority, {"csr": new_csr()[2], "ott": ott})
    clock.advance(timedelta(minutes=5) + LEEWAY / 2)
    frozen_authority.stores.tokens.prune_tokens(clock.now())
    with pytest.raises(Unauthorized):
        sign_json(frozen_authority, {"csr": new_csr()[2], "ott": ott})
    assert frozen_authority.stores.certificates.count_certificates() == 1
