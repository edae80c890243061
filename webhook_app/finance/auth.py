"""HTTP basic auth for the finance pages, from FINANCE_USERNAME / FINANCE_PASSWORD.

Both parts are always compared, each in constant time (`hmac.compare_digest`), so the response time
does not reveal how much of a guess was right, nor whether the username alone was.
"""

from __future__ import annotations

import hmac

from werkzeug.datastructures import Authorization

from webhook_app.config import Settings

REALM = "Finance"


def finance_enabled(settings: Settings) -> bool:
    """True when both finance credentials are configured (the pages are off otherwise)."""
    return settings.finance.enabled


def credentials_ok(auth: Authorization | None, settings: Settings) -> bool:
    """True when `auth` carries the configured finance username and password."""
    if auth is None or auth.type != "basic" or not finance_enabled(settings):
        return False
    user_ok = hmac.compare_digest(
        (auth.username or "").encode("utf-8"), (settings.finance.username or "").encode("utf-8")
    )
    password_ok = hmac.compare_digest(
        (auth.password or "").encode("utf-8"), (settings.finance.password or "").encode("utf-8")
    )
    return user_ok & password_ok  # no short-circuit: both comparisons always run


def challenge_header() -> str:
    """The WWW-Authenticate value that makes browsers ask for credentials."""
    return f'Basic realm="{REALM}", charset="UTF-8"'
