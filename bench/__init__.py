"""The benchmark harness (``make bench``, issue 7): see bench/run.py."""
