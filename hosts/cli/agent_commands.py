"""The agent's commands moved to :mod:`agent.cli`, so a device's ``devid agent ...``
imports nothing of the server; this module only keeps the old import path working
(``demo`` shows certificates' SANs with :func:`agent.cli.general_names`).
"""

from __future__ import annotations

from agent.cli import general_names as _general_names
from agent.cli import register

__all__ = ["_general_names", "register"]
