"""Teleserve: customer-service and self-service platform for telecom operators."""

__version__ = "0.1.0"
