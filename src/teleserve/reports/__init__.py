"""The reports domain: dashboards and the figures behind them (DESIGN.md section 3)."""
