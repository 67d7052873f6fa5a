"""healthgate: firmware/display."""
