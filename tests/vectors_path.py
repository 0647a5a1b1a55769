"""Where the third-party test vectors live: tests/vectors/ (README.md there says what
each folder holds, where it comes from and under which licence)."""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parent / "vectors"
