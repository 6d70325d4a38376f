"""Test, benchmark and demo harness: real servers and processes, never shipped."""
