"""Helpers for the tests of code that uses flowbus (``flowbus.testing.utilities``)."""
