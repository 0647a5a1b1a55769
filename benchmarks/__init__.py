"""devid's benchmark suite: the signing path in process and through a host.

Run it with ``python -m benchmarks`` (``make bench``); ``--help`` explains
every figure. The modules:

- :mod:`benchmarks.inprocess`: ``Authority.sign`` per issuer key type, with the
  SQLite store at ``synchronous=full`` and ``normal``, against the crypto-only
  limit measured in the same run; plus a per-stage breakdown and an optional
  cProfile of the P-256 path.
- :mod:`benchmarks.http`: ``devid serve`` in a subprocess, loaded by a trio +
  httpx generator at several concurrency levels.
- :mod:`benchmarks.report`: the terminal table, ``latest.md`` and the JSON files.
"""

from __future__ import annotations

#: Bumped when the JSON layout changes incompatibly.
SCHEMA = "devid-bench/1"

__all__ = ["SCHEMA"]
