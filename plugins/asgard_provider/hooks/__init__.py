"""Hooks: each owns the connection to one external system."""
