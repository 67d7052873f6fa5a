"""healthgate: provisioning."""
