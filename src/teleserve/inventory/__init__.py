"""The inventory domain (DESIGN.md section 3)."""
