"""Automation: what starts runs without a person asking (schedules fired by beat, sensors,
events) and who is told what happened (outbound webhooks, the dead-letter queue)."""
