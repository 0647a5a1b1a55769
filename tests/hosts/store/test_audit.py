"""The audit log (hosts.store.audit): appended events read back newest first, filtered
and paged."""

from __future__ import annotations

from datetime import datetime, timedelta

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


def test_issuance_events_and_other_events_read_as_one_log(stores: Stores) -> None:
    """A certificate's issuance event, written with it, is kept in its row; the log reads
    it among the other events: one order, ids from one sequence, every filter, one total."""
    from hosts.store.sqlite import SQLiteAudit

    from .records import record

    def at(minute: int) -> datetime:
        return NOW + timedelta(minutes=minute)

    stores.audit.append(AuditEvent(at(0), "cli:alice", "device.added", "urn:ek:1"))
    renewed = AuditEvent(
        at(1), "device:urn:ek:1", "certificate.renewed", "c1", details={"renewed_from": "b0"}
    )
    assert stores.certificates.record_certificate(record("c1"), event=renewed)
    stores.audit.append(AuditEvent(at(2), "admin-token", "device.disabled", "urn:ek:1"))
    issued = AuditEvent(at(3), "provisioner:admin", "certificate.issued", "c2")
    assert stores.certificates.record_certificate(record("c2"), event=issued)
    # An event about another certificate, or a refusal, is an event of the log's own.
    other = AuditEvent(at(4), "provisioner:admin", "certificate.issued", "zz", "refused")
    assert stores.certificates.record_certificate(record("c3"), event=other)

    events, total = stores.audit.find(AuditQuery())
    assert total == 5
    assert [(e.action, e.target) for e in events] == [
        ("certificate.issued", "zz"),
        ("certificate.issued", "c2"),
        ("device.disabled", "urn:ek:1"),
        ("certificate.renewed", "c1"),
        ("device.added", "urn:ek:1"),
    ]
    ids = [e.id for e in events]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 5
    kept = events[3]
    assert (kept.time, kept.actor, kept.result, kept.details) == (
        at(1),
        "device:urn:ek:1",
        "ok",
        {"renewed_from": "b0"},
    )
    record_c1 = stores.certificates.get_certificate("c1")
    assert record_c1 is not None and record_c1.created_at == at(1)

    def found(**filters: object) -> list[str]:
        page, count = stores.audit.find(AuditQuery(**filters))  # type: ignore[arg-type]
        assert count == len(page)
        return [e.target for e in page]

    assert found(action="certificate.") == ["zz", "c2", "c1"]
    assert found(target="c1") == ["c1"]
    assert found(actor="device:urn:ek:1") == ["c1"]
    assert found(result="refused") == ["zz"]
    assert found(result="ok", action="certificate.issued") == ["c2"]
    assert found(since=at(1), until=at(3)) == ["urn:ek:1", "c1"]
    page, count = stores.audit.find(AuditQuery(limit=2, offset=1))
    assert count == 5 and [e.target for e in page] == ["c2", "urn:ek:1"]
    if isinstance(stores.audit, SQLiteAudit):
        # Kept in the certificates' rows: audit_events holds only the others.
        rows = stores.audit.database.all("SELECT target FROM audit_events ORDER BY id")
        assert [r[0] for r in rows] == ["urn:ek:1", "urn:ek:1", "zz"]
    # Appended later, an event still gets a larger id than every issuance event.
    later = stores.audit.append(AuditEvent(at(5), "system", "crl.published", "agent"))
    assert later.id is not None and later.id > max(i for i in ids if i is not None)


def test_the_first_event_ever_may_be_an_issuance(stores: Stores) -> None:
    from .records import record

    issued = AuditEvent(NOW, "provisioner:admin", "certificate.issued", "d1")
    assert stores.certificates.record_certificate(record("d1"), event=issued)
    appended = stores.audit.append(AuditEvent(NOW, "system", "crl.published", "agent"))
    events, _ = stores.audit.find(AuditQuery())
    assert [(e.id, e.target) for e in events] == [(appended.id, "agent"), (1, "d1")]
    assert appended.id == 2
