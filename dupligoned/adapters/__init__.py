"""Adapters: the code that touches files, images, databases and configuration."""
