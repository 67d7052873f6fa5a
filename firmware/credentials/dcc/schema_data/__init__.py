"""Data: a copy of the EU DCC JSON schema 1.3.3 (Apache-2.0), read by `dcc/schema.py`."""
