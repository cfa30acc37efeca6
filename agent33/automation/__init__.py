"""Automation: user schedules fired by beat (and, with issue 11, webhooks, dead letters and
sensors)."""
