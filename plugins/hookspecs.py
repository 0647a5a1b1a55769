"""Every hook a devid plugin can implement.

Plugins are modules or objects whose functions carry ``@hookimpl`` and match
these names. Register a plugin by adding it to the ``devid`` entry-point group
of your distribution::

    [project.entry-points.devid]
    myplugin = "my_package.devid_plugin"

Nothing outside :mod:`plugins.manager` calls ``pm.hook``; the typed facade
there is the only caller. A plugin function whose name starts with ``devid_``
but is no hook below (a misspelling) stops loading with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pluggy

from engine.csr import CSRInfo
from engine.policy import SignPolicy

from .base import Provisioner
from .enrolment import ChallengeQuery

PROJECT = "devid"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def devid_provisioner_types() -> Sequence[type[Provisioner]]:
    """Return the provisioner types (classes) this plugin provides.

    Each class subclasses :class:`plugins.api.Provisioner` and has a unique
    ``type_name`` (for example ``"JWK"``) that ``[[provisioners]]`` tables name in
    their ``type`` key. Every plugin's answer is collected; two plugins registering
    the same type name, or a class that is no Provisioner, is a configuration error.
    """
    raise NotImplementedError


@hookspec
def devid_attestation_formats() -> Sequence[Any]:
    """Return the attestation-statement formats this plugin verifies.

    Each object has a ``format_name`` (``"tpm"``, ``"apple"``, ``"step"``)
    used by device-attest-01. Every plugin's answer is collected.
    """
    raise NotImplementedError


@hookspec
def devid_check_sign(provisioner: Provisioner, csr: CSRInfo, policy: SignPolicy) -> None:
    """Veto a signing request on organisation-wide grounds.

    Called after the provisioner authorized the request and before anything
    is signed. Raise :class:`engine.errors.Forbidden` (or another
    ``ProtocolError``) to refuse; return None to allow. Every plugin is asked.
    """


@hookspec
def devid_inventory_devices(source_config: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """Return the devices an external inventory (an MDM, an asset system) knows.

    Each item is a device record as the admin API accepts it: ``ek``
    (``urn:ek:sha256:...``) or ``ekCertificate`` (PEM or base64 DER), and
    optionally ``serial``, ``name``, ``owner``, ``tags`` and ``status``
    (``active``/``disabled``). *source_config* is the ``[inventory]`` table
    of devid.toml. ``devid device sync`` (and the server, when
    ``[inventory] sync_interval`` is set) calls every plugin and adds or
    updates each device; a bad record is reported and skipped. Fetching from
    the network is fine here: this hook runs on the host, never in the engine.
    """
    raise NotImplementedError


@hookspec
def devid_audit(event: str, fields: Mapping[str, Any]) -> None:
    """Observe an auditable event (``certificate.issued``, ``certificate.revoked``, ...).

    *fields* is a read-only mapping of JSON-compatible values. Every plugin's
    implementation is called, each on its own: an exception raised by one is
    logged and ignored, and the others still see the event, so an audit sink
    cannot stop the CA or hide an event from another sink.
    """


@hookspec
def devid_scep_challenge(query: ChallengeQuery) -> bool | None:
    """Judge a SCEP challenge password (for provisioners with ``challenge_hook = true``).

    Return True to accept *query*'s challenge, False to refuse it, None to have no
    opinion. The request is accepted only if some implementation says True and none
    says False; an implementation that raises refuses it (the error is logged). It runs
    on the host, in a worker thread, so asking an MDM over the network is fine; keep
    it well under the client's patience (a few seconds).
    """
