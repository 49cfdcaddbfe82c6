"""Passwords, keys and (later) tokens."""
