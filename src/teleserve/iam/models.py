"""Tables of the iam domain."""
