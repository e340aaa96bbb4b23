"""DupliGone: a self-hosted photo de-duplication daemon."""

__version__ = "0.1.0"
