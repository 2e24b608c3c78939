"""Subcommands of ``smoothcert``; each module defines ``register(subparsers)``."""
