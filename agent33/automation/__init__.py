"""Automation: outbound webhooks, the dead-letter queue (and schedules and sensors)."""
