"""The device side of devid: CA client commands, and later the TPM agent."""
