"""Forgetting a used token and listing a provisioner's used tokens: what ``devid cloud
forget`` and ``devid cloud list`` do with a cloud provisioner's trust on first use."""

from __future__ import annotations

from datetime import timedelta

from hosts.store import Stores

from .records import NOW, record, token

FAR = NOW + timedelta(days=365 * 100)


def test_a_forgotten_token_is_accepted_once_more(stores: Stores) -> None:
    assert stores.certificates.record_certificate(record("a1"), token("instance:42", "gcp"))
    assert not stores.certificates.record_certificate(record("a2"), token("instance:42", "gcp"))
    assert stores.tokens.forget_token("gcp", "instance:42")
    assert not stores.tokens.forget_token("gcp", "instance:42")  # nothing left to forget
    assert stores.certificates.record_certificate(record("a2"), token("instance:42", "gcp"))
    assert not stores.tokens.use_token("gcp", "instance:42", FAR, NOW)


def test_forgetting_is_per_provisioner_and_token(stores: Stores) -> None:
    for provisioner, token_id in (("gcp", "instance:1"), ("other", "instance:1"), ("gcp", "t")):
        assert stores.tokens.use_token(provisioner, token_id, FAR, NOW)
    assert not stores.tokens.forget_token("gcp", "instance:2")
    assert not stores.tokens.forget_token("nobody", "instance:1")
    assert stores.tokens.forget_token("gcp", "instance:1")
    assert not stores.tokens.use_token("other", "instance:1", FAR, NOW)
    assert not stores.tokens.use_token("gcp", "t", FAR, NOW)
    assert stores.tokens.count_used_tokens() == 2


def test_used_tokens_by_provisioner_and_prefix(stores: Stores) -> None:
    for provisioner, token_id in (
        ("gcp", "instance:2"),
        ("gcp", "instance:10"),
        ("gcp", "instance;next"),  # the character after ':' starts no id of the prefix
        ("gcp", "jti-1"),
        ("gcp", "instance%_"),
        ("other", "instance:3"),
    ):
        assert stores.tokens.use_token(provisioner, token_id, FAR, NOW)
    found = stores.tokens.used_tokens("gcp", "instance:")
    assert found == [("instance:10", FAR), ("instance:2", FAR)]
    assert [t for t, _ in stores.tokens.used_tokens("gcp", "instance%")] == ["instance%_"]
    assert len(stores.tokens.used_tokens("gcp")) == 5
    assert stores.tokens.used_tokens("nobody", "instance:") == []
    top = chr(0x10FFFF)
    assert stores.tokens.use_token("gcp", f"x{top}y", FAR, NOW)
    assert [t for t, _ in stores.tokens.used_tokens("gcp", f"x{top}")] == [f"x{top}y"]
