"""Command-line interfaces: argument parsing only; all work happens in the library."""
