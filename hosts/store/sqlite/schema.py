"""The current schema, in full: what a new database is created with.

The database records its version in ``PRAGMA user_version``. A database written at an
older version is brought here by :mod:`.migrations`, and must then look exactly as
if it had been created from these statements (the tests compare both).

History: 1, the first versioned schema (tables were added to it with ``CREATE TABLE
IF NOT EXISTS`` while it lasted). 2, ``certificates.device``: the EK URN of the device
a certificate was issued to, to revoke all of them when the device is disabled.
3, ``audit_events``: the audit log (who changed what, and what was refused).
4, fewer pages written per issued certificate: ``used_tokens`` keyed by its primary key
alone (WITHOUT ROWID), ``certificates_by_device`` only over certificates that have a
device, the audit log indexed by time and by target only (a query by actor or action
reads the log newest first), and a certificate's issuance event kept in its own row
(``certificates.audit_*``, read as part of the audit log) instead of a row of
``audit_events`` with its indexes; ``certificates_by_time`` orders both the certificate
inventory and those events.
5, SCEP: ``scep_transactions`` (each enrolment under its client's transactionID, listed
by status and time) and ``scep_challenges`` (one-time challenge passwords, by their
SHA-256 only).
6, ``operators``: the operator UI's local accounts (role, argon2id password hash, TOTP
secret and the last TOTP step accepted).
"""

from __future__ import annotations

SCHEMA_VERSION = 6

#: The audit log as schema 4 has it (schema 3 also had an index by actor and one by action).
AUDIT_EVENTS = (
    """CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX audit_events_by_time ON audit_events(time)",
    "CREATE INDEX audit_events_by_target ON audit_events(target, time)",
)

#: SCEP's tables, as schema 5 added them (the step to 5 creates them from here: a later
#: change to them is a step of its own).
SCEP = (
    """CREATE TABLE scep_transactions (
    provisioner TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    message_type INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'issued', 'rejected')),
    subject TEXT NOT NULL,
    csr_der BLOB NOT NULL,
    signer_der BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    serial TEXT,
    decided_by TEXT,
    reason TEXT,
    method TEXT,
    PRIMARY KEY (provisioner, transaction_id)
)""",
    # Operators list the requests awaiting them (or those of another status), newest first.
    "CREATE INDEX scep_transactions_by_status ON scep_transactions(status, created_at)",
    """CREATE TABLE scep_challenges (
    provisioner TEXT NOT NULL,
    challenge_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    subject TEXT,
    used_at REAL,
    used_by TEXT,
    PRIMARY KEY (provisioner, challenge_sha256)
) WITHOUT ROWID""",
)

#: The operator accounts, as schema 6 added them (the step to 6 creates them from here).
OPERATORS = (
    """CREATE TABLE operators (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    totp_secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    last_totp_step INTEGER
) WITHOUT ROWID""",
)

STATEMENTS = (
    """CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    provisioner_type TEXT NOT NULL,
    provisioner_name TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    der BLOB NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    device TEXT,
    audit_id INTEGER,
    audit_actor TEXT,
    audit_action TEXT,
    audit_details TEXT
)""",
    "CREATE INDEX certificates_by_provisioner ON certificates(provisioner_name)",
    "CREATE INDEX certificates_by_time ON certificates(created_at)",
    # Certificates issued to a device (by EK URN); the others (no device) are not indexed.
    "CREATE INDEX certificates_by_device ON certificates(device) WHERE device IS NOT NULL",
    """CREATE TABLE used_tokens (
    provisioner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (provisioner, token_id)
) WITHOUT ROWID""",
    "CREATE INDEX used_tokens_by_expiry ON used_tokens(expires_at)",
    """CREATE TABLE devices (
    ek_urn TEXT PRIMARY KEY,
    ek_certificate BLOB,
    serial TEXT,
    name TEXT,
    owner TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)""",
    "CREATE INDEX devices_by_owner ON devices(owner)",
    """CREATE TABLE attestation_sessions (
    id TEXT PRIMARY KEY,
    ek_urn TEXT NOT NULL,
    session TEXT NOT NULL,
    expires_at REAL NOT NULL
)""",
    "CREATE INDEX attestation_sessions_by_expiry ON attestation_sessions(expires_at)",
    """CREATE TABLE revocations (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    issuer TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    reason_code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL
)""",
    """CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL,
    UNIQUE (provisioner, thumbprint)
)""",
    """CREATE TABLE acme_orders (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
)""",
    "CREATE INDEX acme_orders_by_account ON acme_orders(account_id, created_at)",
    """CREATE TABLE acme_authorizations (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
)""",
    """CREATE TABLE acme_challenges (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    authorization_id TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL
)""",
    "CREATE INDEX acme_challenges_by_status ON acme_challenges(status)",
    """CREATE TABLE acme_certificates (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    provisioner TEXT NOT NULL,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL
)""",
    """CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)""",
    *AUDIT_EVENTS,
    *SCEP,
    *OPERATORS,
)
