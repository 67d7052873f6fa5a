"""healthgate: fleet."""
