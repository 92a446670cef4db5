"""Blocks under Prefect's import path (``prefect.blocks`` → ``flowbus.blocks``): only the
``JSON`` block of :mod:`flowbus.blocks.system`, where interactive flows keep small state."""
