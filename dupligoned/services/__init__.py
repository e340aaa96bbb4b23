"""Services: ingest, grouping, decisions. They combine the core with adapters passed in."""
