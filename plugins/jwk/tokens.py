"""Minting JWK provisioner tokens: the functions live in :mod:`plugins.minting` (light
enough for a device) and are re-exported here through the public plugin API."""

from __future__ import annotations

from plugins.api import mint_token as mint_token
from plugins.api import sign_token_claims as sign_token_claims
