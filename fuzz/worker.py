"""One target under atheris: ``python -m fuzz.worker TARGET [libFuzzer arguments]``.

devid's own packages are imported with atheris's coverage instrumentation, so
libFuzzer keeps the inputs that reach new code. ``python -m fuzz`` starts this
once per target and reads libFuzzer's report from its standard error.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import atheris
from atheris.import_hook import instrument_imports

INSTRUMENTED = ["engine", "plugins", "hosts", "fuzz.targets"]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m fuzz.worker TARGET [libFuzzer arguments]")
    # devid's loggers would print every refusal; errors are caught by the harness.
    logging.getLogger("devid").propagate = False
    with instrument_imports(include=INSTRUMENTED):
        module = importlib.import_module(f"fuzz.targets.{argv[1]}")
    # libFuzzer starts itself again for -merge=1: the runner names a script that does so.
    program = os.environ.get("FUZZ_WORKER_PROGRAM", argv[0])
    atheris.Setup([program, *argv[2:]], module.test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
