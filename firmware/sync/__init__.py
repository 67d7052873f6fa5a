"""healthgate: firmware/sync."""
