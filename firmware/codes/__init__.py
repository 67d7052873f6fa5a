"""healthgate: firmware/codes."""
