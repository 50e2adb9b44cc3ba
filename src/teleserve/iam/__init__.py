"""The iam domain (DESIGN.md section 3)."""
