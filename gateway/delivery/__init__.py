"""Delivery: the engine that takes queued messages to Graph, and its pure policies."""
