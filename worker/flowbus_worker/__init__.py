"""The flowbus worker service."""
