"""rpa's benchmark harness: `python -m bench.run` from the repository root (see README.md)."""
