"""Scaffolding for running devid and its peers in tests and benchmarks, on loopback only.

What the test suite, the benchmarks and a plugin's own tests all need, in one
place:

- :mod:`hosts.testing.ports`: free TCP (and UDP) ports on 127.0.0.1;
- :mod:`hosts.testing.processes`: a child process with its output in files, a
  bounded wait for readiness that names the process and quotes its output when
  it fails, and a stop that terminates, then kills, the process and any worker
  it leaves behind;
- :mod:`hosts.testing.servers`: the ``devid`` command, ``devid serve`` as a
  subprocess on either host (quart or raw) ready once ``/health`` answers over
  TLS, and a host served inside a trio nursery of the caller;
- :mod:`hosts.testing.challtestsrv`: pebble-challtestsrv (Debian ``pebble``) as
  a mock DNS server, with a client for its management API.

Importing these modules starts nothing and loads no host framework; the host
code is imported only when a server is started in process. Every address they
listen on or connect to is a loopback one.
"""
