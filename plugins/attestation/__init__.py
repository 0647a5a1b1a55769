"""Attestation-statement formats for ACME device-attest-01, each a plugin."""
