"""Command-line shells. Each turns domain errors into one line and an exit code."""
