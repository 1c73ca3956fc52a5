"""The cluster tests' databases (fixtures in tests/support/postgres.py)."""
