"""`make demo`: the whole recovery flow on one machine, with stand-ins for Stripe and Loops.

Runnable stand-ins live here, not in the `webhook_app` package (they are never installed, so a
deployment cannot be wired to a fake billing system by mistake) and not in `tests/standins/` (those are
test code with fault knobs; these are for a person clicking through). `python -m demo` refuses to
start with APP_ENV=production.
"""
