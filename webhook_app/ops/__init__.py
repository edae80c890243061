"""Operator commands around the webhook flow: portal setup, doctor, endpoint registration, the bulk
dunning campaign and inbox catch-up (`events sync`). Click commands live in `commands.py`; each
module below them does one job and takes the app's `Services`.
"""
