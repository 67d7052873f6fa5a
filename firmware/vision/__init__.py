"""healthgate: firmware/vision."""
