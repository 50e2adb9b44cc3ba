"""The numbers domain (DESIGN.md section 3)."""
