"""The notify domain (DESIGN.md section 3)."""
