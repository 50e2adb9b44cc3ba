"""The HTTP app shell."""
