"""Automation: what starts runs without a person asking (schedules fired by beat, sensors,
events)."""
