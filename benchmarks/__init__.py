"""devid's benchmark suite: the signing path in process and through a host.

Run it with ``python -m benchmarks`` (``make bench``); ``--help`` explains
every figure. The modules:

- :mod:`benchmarks.inprocess`: ``Authority.sign`` per issuer key type, with the
  SQLite store at ``synchronous=full`` and ``normal``, against the crypto-only
  limit measured in the same run; plus a per-stage breakdown and an optional
  cProfile of the P-256 path.
- :mod:`benchmarks.http`: ``devid serve`` in subprocesses (quart and raw hosts,
  raw with 1..N workers), loaded by :mod:`benchmarks.loadgen` (h11 on trio TLS
  streams) at several concurrency levels (sections ``http`` and ``scaling``).
- :mod:`benchmarks.attestation`: AK enrolments against swtpm, step by step; then
  :mod:`benchmarks.device_attest`: ACME device-attest-01 enrolments through
  ``agent.enroll`` and the server's validations/s.
- :mod:`benchmarks.soak`: the server's RSS across many issuances.
- :mod:`benchmarks.acme`: complete ACME orders against devid (quart and raw) and
  Debian's pebble side by side, driven by :mod:`benchmarks.acme_client` (one
  small trio ACME client and the http-01 responder every server validates
  against).
- :mod:`benchmarks.procs`: CPU, memory and children of processes, from /proc.
- :mod:`benchmarks.plot`: ``throughput.png`` (matplotlib, the ``bench`` extra).
- :mod:`benchmarks.report`: the terminal tables, ``latest.md`` and the JSON files.
"""

from __future__ import annotations

#: Bumped when the JSON layout changes incompatibly.
SCHEMA = "devid-bench/2"

__all__ = ["SCHEMA"]
