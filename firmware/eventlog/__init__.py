"""healthgate: firmware/eventlog."""
