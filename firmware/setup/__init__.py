"""Kiosk setup: provisioning codes, offline bundles, first boot (the technician's tool: provisioning)."""
