"""The pure engine: arrays and value objects in, value objects out. No I/O, no framework."""
