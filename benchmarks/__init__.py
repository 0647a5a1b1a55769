"""devid's benchmark suite: the signing path in process and through a host.

Run it with ``python -m benchmarks`` (``make bench``); ``--help`` explains
every figure. The modules:

- :mod:`benchmarks.cli`: the options, the modes' sizes, running the sections.
- :mod:`benchmarks.sections`: one module per section. ``inprocess``:
  ``sign_body`` (hosts/http/api.py) per issuer key type, with the SQLite store at
  ``synchronous=full`` and ``normal``, against the crypto-only limit measured
  in the same run; ``breakdown``: a per-stage split of the P-256 path;
  ``profile``: its cProfile. ``http`` and ``scaling``: ``devid serve`` in
  subprocesses (quart and raw hosts, raw with 1..N workers) loaded at several
  concurrency levels. ``attestation``: AK enrolments against swtpm, step by
  step, then (``device_attest``) ACME device-attest-01 enrolments through
  ``agent.enroll`` and the server's validations/s. ``soak``: the server's RSS
  across many issuances. ``acme``: complete ACME orders against devid (quart
  and raw) and Debian's pebble side by side.
- :mod:`benchmarks.rounds`: the shared round logic (what a round costs the
  server and the client, interleaving, latency figures, the signing load).
- :mod:`benchmarks.servers`: the measured ``devid serve`` processes, built on
  :mod:`hosts.testing`; :mod:`benchmarks.pebble`: pebble.
- :mod:`benchmarks.loadgen`: the load generator (h11 on trio TLS streams);
  :mod:`benchmarks.acme_client`: one small trio ACME client and the http-01
  responder every ACME server validates against.
- :mod:`benchmarks.procs`: CPU and memory of process trees, from /proc.
- :mod:`benchmarks.common`: progress lines, statistics, machine facts, CAs and
  requests.
- :mod:`benchmarks.report`: the terminal tables, ``latest.md``, the JSON files
  and ``throughput.png`` (matplotlib, the ``bench`` extra).
"""

from __future__ import annotations

#: Bumped when the JSON layout changes incompatibly.
SCHEMA = "devid-bench/2"

__all__ = ["SCHEMA"]
