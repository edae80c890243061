"""Braintree: webhook parsing, gateway client and money helpers."""
