"""The benchmarks: ``python -m bench forwarding|daemon`` (see bench/README.md)."""
