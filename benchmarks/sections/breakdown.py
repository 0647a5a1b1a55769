"""Where the time of an issuance goes: ``sign_body`` (``POST /1.0/sign`` in process) split
into the functions it calls.

Each function on the signing path (looked up by name in :data:`PROBES`) is
wrapped with a ``perf_counter`` timer and a ``process_time`` one (the CPU the process
used meanwhile: user and system time, the kernel's share of a commit's fsync
included, its wait left out) while the breakdown runs; probed and
plain issuances alternate in small chunks, and the whole call, timed unwrapped
exactly like the inprocess section, is the reference every share is against. A
probe that finds no function to wrap, or whose function is never called, is
named under ``missing`` in the results (and in a warning), so that a probe a
refactoring left behind shows up instead of quietly measuring nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.keys import KeyType
from hosts.core.authority import Authority
from hosts.http.api import sign_body

from ..common import Progress, make_client_requests, median, rounded
from . import RunContext
from .inprocess import BenchCA, timed_issuance

NAME = "breakdown"
SIZE_OPTIONS: tuple[str, ...] = ()  # --issuances and --repetitions: the inprocess section's

SUMMARY = """\
  breakdown    sign_body for P-256 split into its stages, timed step by step.
"""
FIGURES = """\
  breakdown
    µs, share    mean µs per issuance spent in each function sign_body calls
                 (parse_csr, routing the token, the provisioner's authorize_sign, the
                 policy hooks, prepare_certificate, the token-use and certificate
                 store writes, the certificate signature, the JSON response),
                 measured by wrapping each with a perf_counter timer; └ rows are
                 nested calls (the SQLite commit, the ES256 check, the leaf's
                 encoding and signature). share is against the whole call timed
                 unwrapped in the same repetitions; unaccounted = whole - sum
                 of the top-level rows (a few µs negative is the timers' own cost).
    CPU µs       the same, as CPU time of the process (user + system) rather than
                 wall time: the fsync waits of a commit are left out, the kernel's
                 work for it counted; "store.record_certificate" is the store's CPU
                 per issuance.
"""


# Where the signing path lives. A refactoring that moves one of these functions changes the
# line that names its place here, and nothing else: the probes below say where to look by
# these names. "store", "plugins" and "provisioners" are the authority's own objects.
SIGN_WIRE = "hosts.http.wire"  # parses the request (parse_csr as imported there), the response
SIGNING = "hosts.service.signing"  # route_credential, prepare_certificate as imported there
CA_CLASS = "hosts.service.ca:CA"  # record_issued
LEAF_ENCODER = "engine.fastcert:LeafEncoder"  # the issuer's pre-encoded leaf template


@dataclass(frozen=True)
class Probe:
    """A function on the signing path, wrapped with a timer while the breakdown runs."""

    label: str
    where: str  # "store", "plugins", "provisioners", or "module" / "module:Class"
    attr: str
    description: str
    parent: str | None = None
    #: Called on some issuances only (another path may serve them): not missing when idle.
    optional: bool = False


# Looked up by name, so a refactoring of the signing path does not break the breakdown:
# a probe whose function no longer exists (or is no longer called) is left out of the
# stages and named under "missing", and whatever is no longer covered shows up as
# "unaccounted".
PROBES = (
    Probe(
        "parse_csr",
        SIGN_WIRE,
        "parse_csr",
        "load the PEM, check the CSR self-signature, read the names",
    ),
    Probe(
        "route_credential",
        SIGNING,
        "route_credential",
        "each provisioner type reads the token (parsed once) to find the provisioner it names",
    ),
    Probe(
        "JWKProvisioner.authorize_sign",
        "provisioners",
        "authorize_sign",
        "verify the token read while routing, check its claims, build the sign policy",
    ),
    Probe(
        "jose.verify_signature",
        "engine.jose",
        "verify_signature",
        "the ES256 token signature check",
        parent="JWKProvisioner.authorize_sign",
    ),
    Probe("plugins.check_sign", "plugins", "check_sign", "org-wide policy hooks"),
    Probe(
        "prepare_certificate",
        SIGNING,
        "prepare_certificate",
        "validators, template, modifiers, validity (nothing signed yet)",
    ),
    Probe(
        "PreparedCertificate.sign",
        "engine.pipeline:PreparedCertificate",
        "sign",
        "serial, certificate encoding, issuer signature, DER",
    ),
    Probe(
        "LeafEncoder.tbs",
        LEAF_ENCODER,
        "tbs",
        "the to-be-signed certificate from the issuer's pre-encoded template",
        parent="PreparedCertificate.sign",
    ),
    Probe(
        "LeafEncoder.certificate",
        LEAF_ENCODER,
        "certificate",
        "the issuer's signature over it, and the certificate DER",
        parent="PreparedCertificate.sign",
    ),
    Probe(
        "x509 CertificateBuilder.sign",
        "cryptography.x509:CertificateBuilder",
        "sign",
        "encoding and signing in cryptography's Rust code (where no template applies)",
        parent="PreparedCertificate.sign",
        optional=True,
    ),
    Probe(
        "CA.record_issued",
        CA_CLASS,
        "record_issued",
        "store the certificate and the used token, log it, call the audit hook",
    ),
    Probe(
        "store.record_certificate",
        "store",
        "record_certificate",
        "one SQLite transaction: token jti + certificate, one commit",
        parent="CA.record_issued",
    ),
    Probe("chain_json", SIGN_WIRE, "chain_json", "the response: leaf and chain as PEM"),
)


def _probe_targets(authority: Authority, where: str) -> list[object]:
    import importlib

    if where == "store":
        return [authority.stores.certificates]
    if where == "plugins":
        return [authority.plugins]
    if where == "provisioners":
        return list(authority.provisioners.values())
    module_name, _, class_name = where.partition(":")
    module = importlib.import_module(module_name)
    return [getattr(module, class_name)] if class_name else [module]


class Instrumented:
    """Wraps the probes' functions with timers; :meth:`restore` puts the originals back."""

    def __init__(self, authority: Authority, probes: Sequence[Probe] = PROBES) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        #: The labels of the probes that found a function to wrap.
        self.wrapped: set[str] = set()
        self._undo: list[Callable[[], None]] = []
        try:
            for probe in probes:
                for target in _probe_targets(authority, probe.where):
                    self._patch(target, probe)
        except BaseException:
            self.restore()
            raise

    def _wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock, cpu_clock = time.perf_counter, time.process_time
        seconds, cpu_seconds, calls = self.seconds, self.cpu_seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = clock(), cpu_clock()
            try:
                return function(*args, **kwargs)
            finally:
                cpu_seconds[label] = cpu_seconds.get(label, 0.0) + cpu_clock() - cpu_started
                seconds[label] = seconds.get(label, 0.0) + clock() - started
                calls[label] = calls.get(label, 0) + 1

        return timed

    def _patch(self, target: object, probe: Probe) -> None:
        name = probe.attr
        if isinstance(target, type | ModuleType):
            original = vars(target).get(name)
            if not callable(original):
                return
            setattr(target, name, self._wrap(probe.label, original))
            self._undo.append(lambda: setattr(target, name, original))
            self.wrapped.add(probe.label)
            return
        bound = getattr(target, name, None)
        if not callable(bound):
            return
        own = name in vars(target)
        setattr(target, name, self._wrap(probe.label, bound))
        self.wrapped.add(probe.label)
        if own:
            self._undo.append(lambda: setattr(target, name, bound))
        else:
            self._undo.append(lambda: delattr(target, name))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu_seconds.clear()
        self.calls.clear()

    def missing(self, probes: Sequence[Probe] = PROBES) -> list[str]:
        """The probes that found nothing to wrap, or whose function was never called
        (optional ones aside): names a refactoring left behind."""
        return [
            probe.label
            for probe in probes
            if probe.label not in self.wrapped
            or (probe.label not in self.calls and not probe.optional)
        ]


BREAKDOWN_CHUNK = 10


def run_breakdown(
    work_dir: Path,
    progress: Progress,
    *,
    key_type: KeyType = KeyType.P256,
    n: int = 400,
    repetitions: int = 5,
    warmup: int = 20,
    sync: str = "full",
) -> dict[str, Any]:
    """Mean µs per issuance in each function sign_body calls, next to the whole call.

    Each repetition issues *n* certificates with the probes in place and *n*
    without them (the "whole" figure, timed exactly like the inprocess section),
    alternating every ``BREAKDOWN_CHUNK`` issuances.
    """
    total = warmup + 2 * n * repetitions
    progress(f"breakdown {key_type.value} sync={sync}: preparing {total} requests")
    requests = make_client_requests(total, KeyType.P256, prefix="stage")
    per_rep: dict[str, list[float]] = {}
    cpu_per_rep: dict[str, list[float]] = {}
    whole: list[float] = []
    whole_cpu: list[float] = []
    missing: set[str] = set()
    with BenchCA.create(work_dir / "breakdown", key_type, (sync,)) as ca:
        authority = ca.authorities[sync]
        for body in ca.bodies(requests[:warmup]):
            sign_body(authority, body)
        for rep in range(repetitions):
            base = warmup + 2 * rep * n
            staged_bodies = ca.bodies(requests[base : base + n])
            whole_bodies = ca.bodies(requests[base + n : base + 2 * n])
            # Probed and plain issuances alternate in small chunks, so that a slow
            # patch of fsyncs lands on both sides alike.
            seconds: dict[str, float] = {}
            cpu_seconds: dict[str, float] = {}
            whole_s = whole_cpu_s = 0.0
            for start in range(0, n, BREAKDOWN_CHUNK):
                end = start + BREAKDOWN_CHUNK
                probes = Instrumented(authority)
                try:
                    timed_issuance(authority, staged_bodies[start:end])
                finally:
                    probes.restore()
                for label, value in probes.seconds.items():
                    seconds[label] = seconds.get(label, 0.0) + value
                for label, value in probes.cpu_seconds.items():
                    cpu_seconds[label] = cpu_seconds.get(label, 0.0) + value
                missing.update(probes.missing())
                cpu_started = time.process_time()
                whole_s += sum(timed_issuance(authority, whole_bodies[start:end]))
                whole_cpu_s += time.process_time() - cpu_started
            for label, value in seconds.items():
                per_rep.setdefault(label, []).append(value / n)
            for label, value in cpu_seconds.items():
                cpu_per_rep.setdefault(label, []).append(value / n)
            whole.append(whole_s / n)
            whole_cpu.append(whole_cpu_s / n)
            # top-level probes do not overlap; nested ones are part of their parent
            top = sum(v for k, v in seconds.items() if _probe(k).parent is None)
            progress(
                f"breakdown {key_type.value}: repetition {rep + 1}/{repetitions}:"
                f" probed {top / n * 1e6:7.1f} µs, whole {whole[-1] * 1e6:7.1f} µs"
            )
    stages: list[dict[str, Any]] = []
    top_level = top_level_cpu = 0.0
    for probe in PROBES:
        if probe.label not in per_rep:
            continue
        us = median(per_rep[probe.label]) * 1e6
        cpu_us = median(cpu_per_rep.get(probe.label, [0.0])) * 1e6
        if probe.parent is None:
            top_level += us
            top_level_cpu += cpu_us
        stages.append(
            {
                "name": probe.label,
                "us": rounded(us, 1),
                "cpu_us": rounded(cpu_us, 1),
                "parent": probe.parent,
                "description": probe.description,
            }
        )
    measured = median(whole) * 1e6
    measured_cpu = median(whole_cpu) * 1e6
    # A probe that measured something in any chunk is not missing.
    missing_labels = [p.label for p in PROBES if p.label in missing and p.label not in per_rep]
    if missing_labels:
        progress(
            "breakdown: these probes found nothing to time (moved or renamed? see the names"
            f" at the top of benchmarks/sections/breakdown.py): {', '.join(missing_labels)}"
        )
    return {
        "key_type": key_type.value,
        "sync": sync,
        "issuances_per_repetition": n,
        "repetitions": repetitions,
        "stages": stages,
        "top_level_total_us": rounded(top_level, 1),
        "authority_sign_us": rounded(measured, 1),
        "unaccounted_us": rounded(measured - top_level, 1),
        "authority_sign_cpu_us": rounded(measured_cpu, 1),
        "unaccounted_cpu_us": rounded(measured_cpu - top_level_cpu, 1),
        "store_cpu_us": next(
            (s["cpu_us"] for s in stages if s["name"] == "store.record_certificate"), None
        ),
        "missing": missing_labels,
    }


def _probe(label: str) -> Probe:
    return next(p for p in PROBES if p.label == label)


def add_options(parser: argparse.ArgumentParser) -> None:
    """None of its own: -n and --repetitions (the inprocess section's) size it too."""


def run(context: RunContext) -> dict[str, Any]:
    n = context.size("issuances", "n")
    return run_breakdown(
        context.work_dir,
        context.progress,
        n=context.size("issuances", "breakdown_n"),
        repetitions=context.size("repetitions", "repetitions"),
        warmup=min(context.sizes["warmup"], n),
    )
