"""The X5C provisioner of one device account, bound to the device inventory.

Its tokens are signed with the device certificate's key (the x5c leaf, from the
Agent CA). Beyond the X5C checks it identifies the device by the certificate's
PermanentIdentifier (its EK), and authorizes only while the device certificate is
still active, the device is registered and active, and the account is active and
assigned to it; the certificate then carries exactly the names the account's
template renders for that device. The account and the device are read through the
lookup at every request, so an account edited or removed and a device disabled take
effect at once, even before the host rebuilds the provisioner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
from cryptography import x509

from engine.accounts import KEY_TYPES as ACCOUNT_KEY_TYPES
from engine.accounts import (
    PROVISIONER_PREFIX,
    Account,
    CSRWithinTemplate,
    SetAccountCertificate,
    device_ek_urn,
    is_assigned,
    render_template,
)
from plugins.api import (
    Assurance,
    Authorization,
    AuthorizeContext,
    ConfigurationError,
    Credential,
    CSRInfo,
    Forbidden,
    KeyTypeIn,
    Lookup,
    Options,
    ProvisionerEnvironment,
    ProvisionerRef,
    RenewAuthorization,
    RenewContext,
    Unauthorized,
    X5CToken,
    jose_token,
    parse_x5c,
    registered_device,
    require_active_device,
    require_active_leaf,
)
from plugins.x5c import X5CProvisioner

ACCOUNT_ISSUER = "account"
DEVICE_ISSUER = "agent"


class AccountProvisioner(X5CProvisioner):
    """``account:NAME``: built by the host for each stored account, never configured."""

    type_name: ClassVar[str] = "ACCOUNT"
    configurable: ClassVar[bool] = False
    assurance: ClassVar[Assurance] = Assurance.DEVICE_ACCOUNT

    def __init__(self, account: Account, lookup: Lookup, agent_ca: x509.Certificate) -> None:
        super().__init__(
            name=account.provisioner_name,
            issuer=ACCOUNT_ISSUER,
            roots=[agent_ca],
            durations=account.durations,
            eku=account.extended_key_usage,
            # The account's current key type is checked at each request (it may change).
            key_types=frozenset(ACCOUNT_KEY_TYPES),
        )
        self.account_name = account.name
        self.lookup = lookup
        # Its certificates and listing name the X5C type, as they always have: the
        # credential is an x5c token, and relying parties and renewal read that type.
        self.ref = ProvisionerRef(type=X5CProvisioner.type_name, name=self.name)

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> AccountProvisioner:
        """Built by the host: ``{"account": NAME, "roots_pem": <the Agent CA>}`` with the
        CA's lookup in *env*; *name* must be ``account:NAME``."""
        opts = Options(f"provisioner {name!r}", options)
        account_name = opts.string("account")
        roots = opts.string("roots_pem")
        opts.finish()
        if env.lookup is None:
            raise ConfigurationError("account provisioners need the CA's records (lookup)")
        if name != PROVISIONER_PREFIX + account_name:
            raise ConfigurationError(f"provisioner {name!r} is not the account {account_name!r}")
        account = env.lookup.account(account_name)
        if account is None:
            raise ConfigurationError(f"there is no account named {account_name!r}")
        try:
            agent_ca = x509.load_pem_x509_certificate(roots.encode())
        except ValueError:
            raise ConfigurationError(f"provisioner {name!r}: roots_pem is not PEM") from None
        return cls(account, env.lookup, agent_ca)

    def public_view(self) -> dict[str, Any]:
        return {**super().public_view(), "type": self.ref.type, "account": self.account_name}

    def current_account(self) -> Account:
        account = self.lookup.account(self.account_name)
        if account is None:
            raise Unauthorized(f"the account {self.account_name!r} no longer exists")
        if not account.active:
            raise Forbidden(f"the account {self.account_name!r} is disabled")
        return account

    def authorize_token(
        self, token: X5CToken, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        authorization = super().authorize_token(token, csr, ctx)
        policy = authorization.policy
        if policy is None:
            raise Forbidden(f"provisioner {self.name!r} authorized no certificate")
        # The token verified, so its x5c leaf is the device certificate that signed it.
        device = registered_device(self.lookup, token.leaf)
        account = self.current_account()
        if not is_assigned(account, device):
            raise Forbidden(
                f"the account {account.name!r} is not assigned to the device {device.ek_urn}"
            )
        common_name, sans = render_template(account, device)
        policy = attrs.evolve(
            policy,
            durations=account.durations,
            validators=(
                *policy.validators,
                KeyTypeIn(frozenset({account.key_type})),
                CSRWithinTemplate(account.name, common_name, frozenset(sans)),
            ),
            modifiers=(
                *policy.modifiers,
                SetAccountCertificate(common_name, sans, account.extended_key_usage),
            ),
            evidence={
                **policy.evidence,
                "account": account.name,
                "account_id": account.id,
                "device": device.ek_urn,
            },
        )
        return attrs.evolve(authorization, policy=policy)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """An account certificate renews only while everything that let it be issued
        still holds: the device is registered and active, the device certificate that
        obtained it is active and unexpired, the account exists (the same one, not one
        re-created under its name), is active and still assigned to the device. The
        renewal ends no later than that device certificate."""
        record = ctx.record
        checked = require_active_device(ctx)
        device = ctx.device
        if device is None:  # require_active_device refused that already
            raise Forbidden("the certificate names no registered device")
        leaf = require_active_leaf(ctx, device=device.ek_urn)
        if leaf.issuer != DEVICE_ISSUER:
            raise Forbidden("the certificate that obtained this one is not a device certificate")
        account = ctx.account
        if account is None or account.name != self.account_name:
            raise Unauthorized(f"the account {self.account_name!r} no longer exists")
        account_id = record.evidence.get("account_id")
        if account_id is not None and account.id != account_id:
            raise Unauthorized(f"the account {self.account_name!r} was removed and re-created")
        if not account.active:
            raise Forbidden(f"the account {account.name!r} is disabled")
        if not is_assigned(account, device):
            raise Forbidden(
                f"the account {account.name!r} is not assigned to the device {device.ek_urn}"
            )
        return RenewAuthorization(
            checked={
                **checked,
                "device_certificate": leaf.serial,
                "device_certificate_status": leaf.status,
                "account": account.name,
                "account_id": account.id,
                "account_status": account.status.value,
                "assigned": True,
            },
            not_after_limit=leaf.not_after,
        )

    def authorize_revoke(
        self, credential: Credential | str, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        """A device may revoke only the account certificates issued to itself."""
        authorization = super().authorize_revoke(credential, serial, ctx)
        leaf = parse_x5c(jose_token(credential).header)[0]
        record = self.lookup.certificate(format(serial, "x"))
        if record is None or record.evidence.get("device") != device_ek_urn(leaf):
            raise Forbidden("a device may revoke only its own account certificates")
        return authorization
