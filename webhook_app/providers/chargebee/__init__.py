"""Chargebee (API v2): a thin HTTP client and webhook verification, provider-specific pieces only."""
