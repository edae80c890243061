"""Paddle Billing: webhook verification, API client and money helpers."""
