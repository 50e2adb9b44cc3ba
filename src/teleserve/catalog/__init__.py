"""The catalog domain (DESIGN.md section 3)."""
