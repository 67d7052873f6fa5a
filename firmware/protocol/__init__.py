"""Wire formats shared by the kiosk and the fleet server."""
