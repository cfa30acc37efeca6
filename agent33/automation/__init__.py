"""Automation: what starts runs without a person asking (sensors, events)."""
