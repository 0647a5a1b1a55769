"""What every host shares: configuration, the CA on disk, the store and the executor."""
