"""Tables of the notify domain."""
