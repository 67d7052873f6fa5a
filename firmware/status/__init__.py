"""The kiosk's read-only status page: a snapshot the loop publishes, and its HTTP server."""
