"""`make demo`: the whole recovery flow on one machine, with stand-ins for Stripe and Loops.

The stand-ins are the ones every test uses (`tests/standins/stripe.py` and `loops.py`: one stand-in
per external system, so the demo cannot drift from what the tests prove); this package adds only what a
person clicking through needs (a page to fail a payment, the emails printed to the console). They
need nothing beyond the app's runtime dependencies (Flask, requests, the Stripe SDK), so `make demo`
runs them from the checkout without the dev tools. None of it is in the `webhook_app` package (never
installed, so a deployment cannot be wired to a fake billing system by mistake), and `python -m demo`
refuses to start with APP_ENV=production.
"""
