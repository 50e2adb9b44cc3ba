"""The payments domain (DESIGN.md section 3)."""
