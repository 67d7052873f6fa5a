"""healthgate: firmware."""

__version__ = "0.1.0"  # reported in each boot event, shown on the fleet dashboard
