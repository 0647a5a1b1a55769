"""Servers and the command line that drive the engine; nothing imports this package."""
