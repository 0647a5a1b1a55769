"""devid's sans-IO core.

Nothing in this package performs I/O, reads the clock or draws randomness:
time and randomness arrive through the ports in :mod:`engine.ports`, and the
hosts execute whatever the engine asks them to do. A test in
``tests/architecture`` enforces this.
"""
