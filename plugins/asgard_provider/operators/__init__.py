"""Operators: one module per service."""
