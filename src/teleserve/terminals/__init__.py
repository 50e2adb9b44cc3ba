"""The terminals domain (DESIGN.md section 3): the kiosk fleet's registry, master keys and
the TSP/1 serial records (``docs/terminals.md``)."""
