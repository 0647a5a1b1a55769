"""Provisioners and attestation formats, each an ordinary pluggy plugin.

Built-in plugins are registered through the ``devid`` entry-point group in
devid's own packaging, exactly as a third-party plugin registers, so the
loader treats them the same way and an operator can disable any of them.
"""
