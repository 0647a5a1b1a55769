"""What each intermediate vouches for, and the check that keeps provisioners to it.

A relying party trusts one intermediate for one purpose (docs/ca.md): a RADIUS server
or VPN gateway trusts the Agent CA to mean "a registered device proved its TPM". That
only holds if nothing else is ever issued from it, so a provisioner that could issue
anything else from the Agent CA, or anything at all from the Attestation CA or the
Account CA (whose certificates come only from devid's accounts), is refused when the
configuration is loaded.
"""

from __future__ import annotations

from engine.acme.identifiers import DEVICE_ATTEST_01
from engine.errors import ConfigurationError
from plugins.base import Provisioner

ISSUER_PURPOSES = {
    "attestation": "TPM attestation-key (AK) certificates, issued by devid's own /attest flow",
    "agent": "device certificates: ACME device-attest-01 and renewals of them",
    "account": "account certificates (Wi-Fi, VPN) of registered devices",
    "tls": "everything that is not a device: ACME http-01/dns-01/tls-alpn-01, JWK tokens,"
    " the server's own certificate, admin client certificates",
}


def issues_device_certificates_only(provisioner: Provisioner) -> bool:
    """An ACME provisioner whose only challenge is device-attest-01."""
    acme = provisioner.acme()
    return acme is not None and acme.profile.challenges == {DEVICE_ATTEST_01}


def check_provisioner_issuer(provisioner: Provisioner) -> None:
    """Refuse a provisioner whose certificates its issuer does not vouch for."""
    name, issuer = provisioner.name, provisioner.issuer
    where = f"provisioner {name!r} ({provisioner.type_name})"
    if issuer == "attestation":
        raise ConfigurationError(
            f'{where}: issuer "attestation" issues {ISSUER_PURPOSES["attestation"]} only;'
            ' set issuer = "tls" in its [[provisioners]] table (or "agent" for an ACME'
            ' provisioner with challenges = ["device-attest-01"])'
        )
    if issuer == "account":
        raise ConfigurationError(
            f'{where}: the Account CA (issuer "account") issues {ISSUER_PURPOSES["account"]}'
            " only, through devid's own accounts (`devid account add`), whose provisioners"
            ' are not configured in devid.toml; set issuer = "tls" in its [[provisioners]]'
            " table"
        )
    acme = provisioner.acme()
    if issuer == "agent" and acme is not None and issues_device_certificates_only(provisioner):
        if not acme.require_inventory:
            raise ConfigurationError(
                f'{where}: the Agent CA (issuer "agent") vouches for registered devices only,'
                " and this provisioner admits devices the inventory does not hold; set"
                ' require_inventory = true, or issuer = "tls" for vendor-attested devices'
                " (apple, step) that are not in the inventory"
            )
        return
    if issuer != "agent":
        return
    challenges = acme.profile.challenges if acme is not None else frozenset[str]()
    if DEVICE_ATTEST_01 in challenges:
        others = sorted(set(challenges) - {DEVICE_ATTEST_01})
        listed = ", ".join(f'"{c}"' for c in others)
        raise ConfigurationError(
            f'{where}: the Agent CA (issuer "agent") issues device certificates only, but this'
            f" provisioner also offers {', '.join(others)}; split it into one ACME provisioner"
            ' with challenges = ["device-attest-01"] and issuer = "agent", and another with'
            f' challenges = [{listed}] and issuer = "tls"'
        )
    raise ConfigurationError(
        f'{where}: the Agent CA (issuer "agent") issues only device certificates (ACME'
        " device-attest-01 and renewals of them), and this provisioner issues other"
        ' certificates; set issuer = "tls" in its [[provisioners]] table'
    )
