"""The stores of every kind over a new SQLite database in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hosts.store import Stores, open_sqlite


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_sqlite(tmp_path / "devid.sqlite", synchronous="normal")
    yield opened
    opened.close()
