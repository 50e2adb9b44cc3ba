"""The customers domain (DESIGN.md section 3)."""
