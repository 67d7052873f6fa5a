"""healthgate: firmware."""
