"""One module per fuzz target; each defines ``test_one_input(data: bytes) -> None``."""
