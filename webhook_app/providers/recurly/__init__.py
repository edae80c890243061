"""Recurly (API v2021-02-25): a thin HTTP client, money conversion and webhook verification."""
