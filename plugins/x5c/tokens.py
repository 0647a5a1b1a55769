"""Minting X5C tokens: the functions live in :mod:`plugins.minting` (light enough for a
device) and are re-exported here through the public plugin API."""

from __future__ import annotations

from plugins.api import mint_x5c_token as mint_x5c_token
from plugins.api import x5c_header as x5c_header
