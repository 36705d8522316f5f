"""Alert delivery: events, the outbox dispatcher, Slack and signed webhooks."""
