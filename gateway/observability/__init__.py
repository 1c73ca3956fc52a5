"""Logging and the HTTP health endpoint."""
