"""The self-contained demo: a demo issuer, synthetic camera frames, and the whole kiosk path."""
