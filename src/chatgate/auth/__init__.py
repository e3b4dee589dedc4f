"""Authentication: finding a credential on a handshake and verifying it."""
