"""Demo data for `teleserve demo` and `teleserve seed`."""
