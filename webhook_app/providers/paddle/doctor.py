"""Paddle's doctor lines: webhook secret, API key and environment, client token, update page, and how
Paddle's own emails to customers fit with ours."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webhook_app.errors import RecoveryError
from webhook_app.ops.doctor import FAIL, OK, WARN, Check
from webhook_app.services import Services

if TYPE_CHECKING:
    from webhook_app.providers.paddle import PaddleProvider

NOTIFICATIONS = "Paddle > Developer tools > Notifications"
# Key and token prefixes per environment: https://developer.paddle.com/api-reference/about/api-keys and
# https://developer.paddle.com/paddle-js/about/client-side-tokens (legacy API keys carry no prefix).
KEY_PREFIXES = {"sandbox": "pdl_sdbx_", "production": "pdl_live_"}
TOKEN_PREFIXES = {"sandbox": "test_", "production": "live_"}


def checks(svc: Services, provider: PaddleProvider) -> list[Check]:
    """Paddle's lines, in the order an operator fixes things."""
    settings = svc.settings.paddle
    public_url = svc.settings.links.public_url
    endpoint = f"{public_url or 'https://<this app>'}/webhooks/paddle"
    lines: list[Check] = []
    if settings.webhook_secrets:
        lines.append(Check("paddle webhook secret", OK, f"{len(settings.webhook_secrets)} secret key(s) set"))
    else:
        lines.append(
            Check(
                "paddle webhook secret",
                FAIL,
                "PADDLE_WEBHOOK_SECRET is not set: every delivery is refused (503)",
                f"in {NOTIFICATIONS}, add a destination for {endpoint} and set its secret key (pdl_ntfset_…)",
            )
        )
    lines.append(_key(provider, settings.api_key, settings.environment))
    lines.append(_client_token(settings.client_token, settings.environment))
    lines.append(_update_page(public_url, settings.environment))
    lines.append(_paddle_emails())
    return lines


def _key(provider: PaddleProvider, api_key: str | None, environment: str) -> Check:
    fix = f"create a key in Paddle > Developer tools > Authentication ({environment}) with transaction, customer, "
    fix += "subscription and address read and transaction write permissions, and set PADDLE_API_KEY"
    if not api_key or provider.client is None:
        return Check("paddle key", FAIL, "PADDLE_API_KEY is not set: deliveries are refused (503)", fix)
    other = next(
        (env for env, prefix in KEY_PREFIXES.items() if env != environment and api_key.startswith(prefix)), None
    )
    if other:
        return Check(
            "paddle key",
            FAIL,
            f"PADDLE_API_KEY is a {other} key but PADDLE_ENVIRONMENT is {environment}",
            f"set PADDLE_ENVIRONMENT={other}, or use a {environment} key",
        )
    try:
        return Check("paddle key", OK, provider.client.check_credentials())
    except RecoveryError as exc:
        return Check("paddle key", FAIL, str(exc), fix)


def _client_token(token: str | None, environment: str) -> Check:
    fix = (
        f"create a client-side token in Paddle > Developer tools > Authentication ({environment}) and set "
        "PADDLE_CLIENT_TOKEN; it is public by design (Paddle.js uses it in the customer's browser)"
    )
    if not token:
        return Check("paddle client token", FAIL, "PADDLE_CLIENT_TOKEN is not set: messages are held", fix)
    expected = TOKEN_PREFIXES[environment]
    if not token.startswith(expected):
        return Check("paddle client token", FAIL, f"not a {environment} token (expected {expected}…)", fix)
    return Check("paddle client token", OK, f"{environment} token set")


def _update_page(public_url: str | None, environment: str) -> Check:
    if not public_url:
        return Check(
            "paddle update page",
            FAIL,
            "PUBLIC_URL is not set: Paddle customers can only update their card on our page, so messages are held",
            "set PUBLIC_URL to this app's public base URL",
        )
    detail = f"{public_url}/pay/paddle/<token> opens Paddle.js ({environment})"
    if environment == "production":
        # Live checkouts open only on approved domains; sandbox needs no approval.
        detail += "; its domain must be approved in Paddle > Checkout > Website approval"
    return Check("paddle update page", OK, detail)


def _paddle_emails() -> Check:
    return Check(
        "paddle emails",
        WARN,
        "Paddle emails your customers about failed payments itself (it is the merchant of record; these "
        "emails link to your default payment link), so they hear from Paddle and from you",
        "keep ours personal and spaced out (DUNNING_CADENCE_DAYS); if Paddle Retain's payment recovery "
        "emails are on, turn them off in Retain or lengthen the cadence; set the default payment link "
        "(Paddle > Checkout > Checkout settings) to a page of your app that opens Paddle.js",
    )
