"""hosts.testing.challtestsrv: a private mock DNS server starts, serves records, stops."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest

from hosts.testing.challtestsrv import challtestsrv_available, start_challtestsrv

pytestmark = pytest.mark.skipif(
    not challtestsrv_available(), reason="pebble-challtestsrv (Debian pebble) is not installed"
)


def txt(port: int, name: str) -> list[str]:
    reply = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=2)
    return [
        b"".join(item.strings).decode()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for item in rrset
    ]


def test_a_private_server_serves_records_and_stops(tmp_path: Path) -> None:
    server = start_challtestsrv(tmp_path)
    try:
        host, port = server.dns_resolver
        assert host == "127.0.0.1"
        server.set_txt("_acme-challenge.X.devid.test", "value")
        assert txt(port, "_acme-challenge.x.devid.test.") == ["value"]
        server.reset()
        assert txt(port, "_acme-challenge.x.devid.test.") == []
    finally:
        status = server.stop()
    assert status is not None
    assert not server.process.running()
