"""The kiosk's status: the status file and `healthgate status` (file, report, cli), and the
read-only status page (a snapshot the loop publishes, its HTTP server, JSON and /metrics).

Kept free of imports: the fleet server reads the status header through `firmware.status.file`
without loading the page's web server.
"""
