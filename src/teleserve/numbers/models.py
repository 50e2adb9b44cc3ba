"""Tables of the numbers domain."""
