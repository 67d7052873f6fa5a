"""healthgate: firmware/camera."""
