"""What operators see: dependency health, diagnostics."""
