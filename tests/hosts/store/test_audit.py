"""The audit log (hosts.store.audit): appended events read back newest first, filtered
and paged."""

from __future__ import annotations

from datetime import timedelta

from hosts.store import AuditEvent, AuditQuery, Stores

from .records import NOW


def log(stores: Stores) -> None:
    events: list[tuple[str, str, str, str, dict[str, object]]] = [
        ("cli:alice", "device.added", "urn:ek:1", "ok", {"name": "laptop"}),
        ("admin-token", "device.disabled", "urn:ek:1", "ok", {"revoked": 2}),
        ("provisioner:admin", "certificate.issued", "0a", "ok", {"sans": ["a.example"]}),
        ("device:urn:ek:2", "attestation.refused", "urn:ek:2", "refused", {"error": "bad"}),
        ("cli:bob", "account.added", "corp-wifi", "ok", {}),
    ]
    for minute, (actor, action, target, result, details) in enumerate(events):
        stores.audit.append(
            AuditEvent(NOW + timedelta(minutes=minute), actor, action, target, result, details)
        )


def test_events_read_back_newest_first_with_their_details(stores: Stores) -> None:
    kept = stores.audit.append(AuditEvent(NOW, "system", "provisioner.loaded", "admin"))
    assert kept.id is not None
    log(stores)
    events, total = stores.audit.find(AuditQuery())
    assert total == 6
    assert [e.action for e in events] == [
        "account.added",
        "attestation.refused",
        "certificate.issued",
        "device.disabled",
        "device.added",
        "provisioner.loaded",
    ]
    assert events[-1] == kept
    issued = events[2]
    assert (issued.time, issued.actor, issued.target, issued.result) == (
        NOW + timedelta(minutes=2),
        "provisioner:admin",
        "0a",
        "ok",
    )
    assert issued.details == {"sans": ["a.example"]}
    assert issued.to_json()["time"] == (NOW + timedelta(minutes=2)).isoformat()


def test_each_filter_narrows_the_events(stores: Stores) -> None:
    log(stores)

    def actions(**filters: object) -> list[str]:
        events, total = stores.audit.find(AuditQuery(**filters))  # type: ignore[arg-type]
        assert total == len(events)
        return [e.action for e in events]

    assert actions(actor="cli:alice") == ["device.added"]
    assert actions(target="urn:ek:1") == ["device.disabled", "device.added"]
    assert actions(result="refused") == ["attestation.refused"]
    assert actions(action="certificate.issued") == ["certificate.issued"]
    # An action ending in a dot is a prefix; without the dot it must match whole.
    assert actions(action="device.") == ["device.disabled", "device.added"]
    assert actions(action="device") == []
    assert actions(action="device%") == []
    assert actions(since=NOW + timedelta(minutes=3)) == ["account.added", "attestation.refused"]
    assert actions(until=NOW + timedelta(minutes=1)) == ["device.added"]
    assert actions(actor="cli:alice", result="refused") == []


def test_a_page_and_the_total(stores: Stores) -> None:
    log(stores)
    events, total = stores.audit.find(AuditQuery(limit=2, offset=1))
    assert total == 5
    assert [e.action for e in events] == ["attestation.refused", "certificate.issued"]
    events, total = stores.audit.find(AuditQuery(limit=10, offset=10))
    assert (list(events), total) == ([], 5)


def test_an_issuance_event_is_written_in_the_certificate_s_own_commit(stores: Stores) -> None:
    from .records import record, token

    issued = AuditEvent(NOW, "provisioner:admin", "certificate.issued", "b1")
    assert stores.certificates.record_certificate(record("b1"), token("t1"), event=issued)
    events, total = stores.audit.find(AuditQuery(action="certificate.issued"))
    assert total == 1 and events[0].target == "b1"
    # A replayed token stores neither the certificate nor its event.
    replayed = AuditEvent(NOW, "provisioner:admin", "certificate.issued", "b2")
    assert not stores.certificates.record_certificate(record("b2"), token("t1"), event=replayed)
    assert stores.certificates.get_certificate("b2") is None
    assert stores.audit.find(AuditQuery(action="certificate.issued"))[1] == 1
