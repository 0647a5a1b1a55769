"""The long-running device agent (``devid agent run``).

Two parts:

* :class:`Scheduler`, pure (no I/O, time from a :class:`engine.ports.Clock`):
  what is due when. The device certificate and every account certificate are
  renewed at two thirds of their lifetime; a failed step is retried with
  exponential back-off, 1 s doubling up to 60 s.
* :class:`Agent`: one *pass* (:meth:`Agent.run_pass`, blocking: attest if
  needed, enrol when the device certificate is missing or due, list the
  accounts, get the account certificates that are missing or due) and
  :func:`run`, a small trio loop that runs passes when something is due and
  stops cleanly on SIGTERM/SIGINT. SIGUSR1 (``devid agent poke``) runs a pass at
  once, listing the accounts again; SIGHUP reloads: it drops the back-off, reads
  ``--root`` again and lists the accounts again. The files of an account no longer
  assigned to the device are removed from ``--out``.

The device certificate and its TPM key live in this process only (never on
disk); restarting the agent means enrolling again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
from cryptography import x509

from engine.ports import Clock

from .accounts import (
    AccountSpec,
    Issued,
    fetch_accounts,
    issue_account_certificate,
    remove_delivered,
)
from .state import AgentError, AgentState, _write_atomic

if TYPE_CHECKING:
    from .enroll import Enrollment, TPMSigningKey
    from .tpm import TPM

log = logging.getLogger("devid.agent")

DEVICE = "device"
ACCOUNTS = "accounts"
RENEW_AT = 2 / 3
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
IDLE_MAX = 3600.0  # re-list the accounts at least hourly (new or changed accounts)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def renewal_time(certificate: x509.Certificate) -> datetime:
    """Two thirds of the way from notBefore to notAfter."""
    start = certificate.not_valid_before_utc
    return start + (certificate.not_valid_after_utc - start) * RENEW_AT


def backoff(failures: int) -> float:
    """Seconds to wait after the *failures*-th failure in a row: 1, 2, 4, ... 60."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures - 1, 16)))


@attrs.define
class Scheduler:
    """What is due when: renewals at two thirds of the lifetime, retries with back-off.

    Keys are ``"device"``, ``"accounts"`` (the listing) and account names.
    """

    clock: Clock
    renew_at: dict[str, datetime] = attrs.field(factory=dict)
    failures: dict[str, int] = attrs.field(factory=dict)
    retry_at: dict[str, datetime] = attrs.field(factory=dict)
    listed_at: datetime | None = None

    def issued(self, key: str, certificate: x509.Certificate) -> datetime:
        """Record a new certificate for *key*; returns when it is due for renewal."""
        self.failures.pop(key, None)
        self.retry_at.pop(key, None)
        self.renew_at[key] = renewal_time(certificate)
        return self.renew_at[key]

    def succeeded(self, key: str) -> None:
        self.failures.pop(key, None)
        self.retry_at.pop(key, None)
        if key == ACCOUNTS:
            self.listed_at = self.clock.now()

    def failed(self, key: str) -> datetime:
        """Record a failure of *key*; returns when to try again."""
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        self.retry_at[key] = self.clock.now() + timedelta(seconds=backoff(count))
        return self.retry_at[key]

    def forget(self, key: str) -> None:
        for table in (self.renew_at, self.failures, self.retry_at):
            table.pop(key, None)

    def is_due(self, key: str) -> bool:
        now = self.clock.now()
        retry = self.retry_at.get(key)
        if retry is not None and now < retry:
            return False
        if key == ACCOUNTS:
            return (
                self.listed_at is None
                or retry is not None
                or now >= self.listed_at + timedelta(seconds=IDLE_MAX)
            )
        renew = self.renew_at.get(key)
        return renew is None or now >= renew or retry is not None

    def next_time(self) -> datetime:
        """When something is next due (the loop sleeps until then)."""
        times = list(self.renew_at.values()) + list(self.retry_at.values())
        if self.listed_at is not None:
            times.append(self.listed_at + timedelta(seconds=IDLE_MAX))
        return min(times) if times else self.clock.now()


@attrs.define
class PassResult:
    issued: list[Issued] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    enrolled: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


@attrs.define
class Agent:
    """The agent's configuration and in-memory state (device certificate and key)."""

    ca_url: str
    root: Path
    tcti: str
    state: Path
    out: Path
    clock: Clock = attrs.field(factory=SystemClock)
    ek: Literal["rsa", "ecc"] | None = None
    tpm_factory: Callable[[str], TPM] | None = None
    scheduler: Scheduler = attrs.field(init=False)
    enrollment: Enrollment | None = attrs.field(init=False, default=None)
    accounts: dict[str, AccountSpec] = attrs.field(init=False, factory=dict)
    certificates: dict[str, Issued] = attrs.field(init=False, factory=dict)
    on_event: Callable[[str], None] | None = None

    def __attrs_post_init__(self) -> None:
        self.ca_url = self.ca_url.rstrip("/")
        self.scheduler = Scheduler(self.clock)

    @property
    def acme_directory(self) -> str:
        return f"{self.ca_url}/acme/devices/directory"

    def _event(self, message: str) -> None:
        log.info("%s", message)
        if self.on_event is not None:
            self.on_event(message)

    def _open(self) -> TPM:
        if self.tpm_factory is not None:
            return self.tpm_factory(self.tcti)
        os.environ.setdefault("TSS2_LOG", "all+none")
        from .tpm import TPM

        return TPM(self.tcti)

    def _fail(self, key: str, what: str, exc: Exception, result: PassResult) -> None:
        retry = self.scheduler.failed(key)
        wait = (retry - self.clock.now()).total_seconds()
        message = f"{what} failed: {exc} (retrying in {wait:.0f} s)"
        log.warning("%s", message)
        result.errors.append(message)

    def poke(self) -> None:
        """The next pass lists the accounts again (``devid agent poke``, SIGUSR1)."""
        self.scheduler.listed_at = None
        self.scheduler.retry_at.pop(ACCOUNTS, None)

    def reload(self) -> None:
        """SIGHUP: forget the back-off (retry now), check ``--root`` reads, list again."""
        from .accounts import _context

        self.scheduler.retry_at.clear()
        self.scheduler.failures.clear()
        try:
            _context(self.root)
        except AgentError as exc:
            log.error("reload: %s", exc)
        self.poke()

    def _remove_unassigned(self, listed: set[str]) -> None:
        """Remove from --out the files of accounts the device no longer has."""
        state = AgentState(self.state)
        delivered = state.load_delivered()
        for gone in sorted((set(self.accounts) | set(delivered)) - listed):
            self.scheduler.forget(gone)
            issued = self.certificates.pop(gone, None)
            files = delivered.pop(gone, issued.files if issued is not None else [])
            removed = remove_delivered([*files, self.state / f"account-{gone}.tpmkey.json"])
            self._event(
                f"account {gone} is no longer assigned: removed"
                f" {', '.join(str(f) for f in removed) or 'nothing'}"
            )
            state.save_delivered(delivered)

    def _delivered(self, issued: Issued) -> None:
        state = AgentState(self.state)
        delivered = state.load_delivered()
        delivered[issued.account] = list(issued.files)
        state.save_delivered(delivered)

    def device_chain(self) -> list[x509.Certificate]:
        """[device certificate, Agent CA certificate] (memory only)."""
        if self.enrollment is None:
            raise AgentError("the device has not enrolled")
        return list(self.enrollment.chain[:2])

    def run_pass(self) -> PassResult:
        """One full pass over whatever is due now. Never raises AgentError: failures are
        logged, recorded for back-off and returned in the result."""
        result = PassResult()
        try:
            with self._open() as tpm:
                self._pass(tpm, result)
        except AgentError as exc:
            self._fail(DEVICE, "opening the TPM", exc, result)
        return result

    def _pass(self, tpm: TPM, result: PassResult) -> None:
        from .enroll import TPMSigningKey, enroll

        sched = self.scheduler
        if sched.is_due(DEVICE):
            try:
                enrollment = enroll(
                    self.acme_directory,
                    self.root,
                    tpm,
                    self.state,
                    ca_url=self.ca_url,
                    ek_algorithm=self.ek,
                )
            except AgentError as exc:
                self._fail(DEVICE, "enrolling the device", exc, result)
                return
            self.enrollment = enrollment
            result.enrolled = True
            renew = sched.issued(DEVICE, enrollment.certificate)
            self._event(
                f"enrolled: device certificate {enrollment.certificate.subject.rfc4514_string()}"
                f" (memory only), renewal at {renew.isoformat()}"
            )
            # A new device identity: list the accounts again with it.
            sched.listed_at = None
        if self.enrollment is None:
            return
        device_key: TPMSigningKey = self.enrollment.key.bind(tpm)
        chain = self.device_chain()
        if sched.is_due(ACCOUNTS) or not self.accounts:
            try:
                listed = fetch_accounts(self.ca_url, self.root, device_key, chain, self.clock.now())
            except AgentError as exc:
                self._fail(ACCOUNTS, "listing the accounts", exc, result)
                return
            sched.succeeded(ACCOUNTS)
            try:
                self._remove_unassigned({a.name for a in listed})
            except AgentError as exc:
                log.warning("removing the files of unassigned accounts: %s", exc)
            changed = [a.name for a in listed if self.accounts.get(a.name) not in (None, a)]
            for name in changed:
                sched.forget(name)  # the template changed: get a new certificate
            self.accounts = {a.name: a for a in listed}
            self._event(f"accounts: {', '.join(sorted(self.accounts)) or '(none)'}")
        for name, account in sorted(self.accounts.items()):
            if not sched.is_due(name):
                continue
            try:
                tpm_key = None
                if account.in_tpm:
                    wrapped = tpm.create_key()
                    tpm_key = TPMSigningKey(tpm, wrapped)
                issued = issue_account_certificate(
                    account,
                    root=self.root,
                    device_key=device_key,
                    device_chain=chain,
                    out=self.out,
                    now=self.clock.now(),
                    tpm_key=tpm_key,
                )
                if tpm_key is not None:
                    self._save_tpm_key(name, tpm_key)
            except AgentError as exc:
                self._fail(name, f"the certificate for account {name!r}", exc, result)
                continue
            self.certificates[name] = issued
            try:
                self._delivered(issued)
            except AgentError as exc:
                log.warning("recording the files delivered for %r: %s", name, exc)
            renew = sched.issued(name, issued.certificate)
            result.issued.append(issued)
            where = "TPM" if account.in_tpm else "software key, 0600"
            self._event(
                f"account {name}: {issued.certificate.subject.rfc4514_string()}"
                f" ({where}) -> {', '.join(str(p) for p in issued.files)};"
                f" renewal at {renew.isoformat()}"
            )

    def _save_tpm_key(self, name: str, key: TPMSigningKey) -> None:
        """The account key as the TPM wrapped it (useless outside this TPM), 0600."""
        import base64

        record: dict[str, Any] = {
            "public": base64.b64encode(key.wrapped.public).decode(),
            "private": base64.b64encode(key.wrapped.private).decode(),
        }
        AgentState(self.state).ensure()
        _write_atomic(self.state / f"account-{name}.tpmkey.json", json.dumps(record).encode())

    def complete(self) -> bool:
        """Whether every listed account has a certificate (and the device one)."""
        return self.enrollment is not None and all(n in self.certificates for n in self.accounts)

    def seconds_to_next(self) -> float:
        delta = (self.scheduler.next_time() - self.clock.now()).total_seconds()
        return max(0.0, min(delta, IDLE_MAX))


def configure_logging(level: int = logging.INFO) -> None:
    """The agent's log lines on stderr; the HTTP client's per-request lines left out."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run(agent: Agent, *, once: bool = False) -> int:
    """Run passes until SIGTERM/SIGINT (or one pass with *once*: exit 0 if it fully worked).

    SIGUSR1 runs a pass at once (:meth:`Agent.poke`), SIGHUP reloads (:meth:`Agent.reload`).
    While it runs, the agent's pid is in ``STATE/agent.pid`` for ``devid agent poke``.
    """
    import trio

    if once:
        result = await trio.to_thread.run_sync(agent.run_pass)
        return 0 if result.ok and agent.complete() else 1
    state = AgentState(agent.state)
    wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
    with trio.open_signal_receiver(*wanted) as signals:
        wake = [trio.Event()]
        try:
            state.write_pid()
        except AgentError as exc:
            log.warning("%s (devid agent poke will not find this agent)", exc)
        try:
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if signum in (signal.SIGTERM, signal.SIGINT):
                            log.info("received %s, stopping", name)
                            nursery.cancel_scope.cancel()
                            return
                        if signum == signal.SIGHUP:
                            log.info("received SIGHUP: reloading, then a pass")
                            agent.reload()
                        else:
                            log.info("received SIGUSR1: a pass now")
                            agent.poke()
                        wake[0].set()

                nursery.start_soon(on_signal)
                while True:
                    await trio.to_thread.run_sync(agent.run_pass)
                    wait = agent.seconds_to_next()
                    log.info("next pass in %.0f s", wait)
                    with trio.move_on_after(max(wait, 0.05) if math.isfinite(wait) else IDLE_MAX):
                        await wake[0].wait()
                    wake[0] = trio.Event()
        finally:
            state.remove_pid()
    log.info("stopped")
    return 0
