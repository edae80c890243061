"""Stripe: the first billing provider (webhook translation, API reading, decline reading)."""
