"""The app wired to the Stripe and Loops stand-ins (`tests/standins/`) on real sockets, in-process.

For the operator commands and the worker's code paths that talk to Stripe and Loops: our code, the
Stripe SDK and the Loops adapter run for real and reach the stand-ins over HTTP through
STRIPE_API_BASE and LOOPS_API_BASE. `open_ops_env(...)` starts both stand-ins, builds and migrates the
app and pushes its context; `close()` undoes all of it.
"""

from __future__ import annotations

from contextlib import ExitStack

from tests.standins import serve
from tests.standins.crash import dying_on_signal
from tests.standins.loops import LoopsStandIn
from tests.standins.stripe import StripeStandIn

LOOPS_KEY = "loops_test_key_0123456789"


def ops_config(database_url: str, stripe_url: str, loops_url: str, **overrides) -> dict:
    """The shared test configuration, with Stripe and Loops pointed at the stand-ins' URLs."""
    from tests.conftest import base_config

    settings = dict(
        STRIPE_API_BASE=stripe_url,
        STRIPE_MAX_RETRIES=0,
        MESSAGING_PROVIDER="loops",
        LOOPS_API_KEY=LOOPS_KEY,
        LOOPS_TRANSACTIONAL_ID="tx_recovery",
        LOOPS_API_BASE=f"{loops_url}/api",
        LOOPS_RATE_PER_SECOND=5000,
    )
    settings.update(overrides)
    return base_config(database_url, **settings)


class OpsEnv:
    """An app wired to the stand-ins, inside its app context: `svc`, `stripe`, `loops`, `cli(...)`."""

    def __init__(self, app, stripe: StripeStandIn, loops: LoopsStandIn):
        from webhook_app.services import services

        self.app, self.stripe, self.loops = app, stripe, loops
        self.svc = services()

    def cli(self, *args: str):
        """Run `webhook-app <args>` in-process; returns click's Result (output, exit_code)."""
        return self.app.test_cli_runner().invoke(args=list(args))


def open_ops_env(database_url: str, clock, *, env_class=OpsEnv, migrate_db: bool = True, **overrides):
    """(env, close): the stand-ins served, the app built (migrated by default) and its context pushed.

    A sending thread dies (`tests.standins.crash.SimulatedCrash`) when the Loops stand-in is told to
    crash it (`loops.crash_after`).
    """
    from webhook_app import create_app, migrate

    stack = ExitStack()
    try:
        stripe = StripeStandIn()
        served = serve(stripe.app)
        stack.callback(served.stop)
        stripe.base_url = served.url
        loops = LoopsStandIn(api_key=LOOPS_KEY)
        # Loops documents no Retry-After; a tiny one keeps the adapter's own pause short in tests.
        loops.retry_after = "0.01"
        loops_served = serve(loops.app)
        stack.callback(loops_served.stop)
        loops.url = loops_served.url
        stack.enter_context(dying_on_signal())
        app = create_app(ops_config(database_url, stripe.base_url, loops.url, **overrides), clock=clock)
        stack.callback(app.extensions["webhook_app"].db.dispose)
        if migrate_db:
            with app.app_context():
                migrate.upgrade(app.extensions["webhook_app"].db)
        stack.enter_context(app.app_context())
    except BaseException:
        stack.close()
        raise
    return env_class(app, stripe, loops), stack.close
