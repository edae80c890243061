"""Benchmarks (`make bench`): the ack path against a floor, worker and campaign against rate limits,
finance at scale. Not part of `make test`. See docs/performance.md."""
