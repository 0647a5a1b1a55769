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
  a mock DNS server, with a client for its management API;
- :mod:`hosts.testing.metadata`: loopback stand-ins for GCP's, AWS's (IMDSv2) and
  Azure's instance metadata services (identity tokens, documents and attested data
  signed with their own keys, and the JWK sets and certificate files to trust them),
  which no real peer can be here.

The plugin test kit, for a devid plugin's own tests (docs/plugins.md):

- :mod:`hosts.testing.ca`: :class:`LocalCA`, a throw-away CA loaded in process,
  the kit's one door into devid's host code;
- :mod:`hosts.testing.served`: :class:`ServedCA`, that CA behind a real ``devid serve``;
- :mod:`hosts.testing.keys`: keys, CSRs and tokens;
- :mod:`hosts.testing.conformance`: :func:`check_provisioner`, the properties every
  provisioner type must have, checked through a real CA;
- :mod:`hosts.testing.plugin`: the pytest plugin (``devid_ca``, ``devid_server``,
  ``devid_server_factory``), loaded by pytest wherever devid is installed.

Importing these modules starts nothing and loads no host framework; the host
code is imported only when a server is started in process. Every address they
listen on or connect to is a loopback one.
"""

# The kit's names, imported on first use so that importing the scaffolding above stays light.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ca import Issued as Issued
    from .ca import LocalCA as LocalCA
    from .conformance import CheckResult as CheckResult
    from .conformance import ConformanceError as ConformanceError
    from .conformance import ConformanceReport as ConformanceReport
    from .conformance import CredentialRequest as CredentialRequest
    from .conformance import check_provisioner as check_provisioner
    from .keys import csr_der as csr_der
    from .keys import csr_pem as csr_pem
    from .keys import hs256_token as hs256_token
    from .keys import jwk_token as jwk_token
    from .keys import jws_token as jws_token
    from .keys import new_csr as new_csr
    from .keys import new_key as new_key
    from .keys import tamper as tamper
    from .served import ServedCA as ServedCA

_KIT = {
    "Issued": "ca",
    "LocalCA": "ca",
    "CheckResult": "conformance",
    "ConformanceError": "conformance",
    "ConformanceReport": "conformance",
    "CredentialRequest": "conformance",
    "check_provisioner": "conformance",
    "csr_der": "keys",
    "csr_pem": "keys",
    "hs256_token": "keys",
    "jwk_token": "keys",
    "jws_token": "keys",
    "new_csr": "keys",
    "new_key": "keys",
    "tamper": "keys",
    "ServedCA": "served",
}


def __getattr__(name: str) -> Any:
    module = _KIT.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
