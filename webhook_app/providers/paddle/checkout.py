"""Where our update page loads Paddle.js from, and the Content-Security-Policy that allows only that.

Paddle.js v2 is served from https://cdn.paddle.com/paddle/v2/paddle.js in both environments (Paddle
asks not to self-host it; `@paddle/paddle-js`'s cdn-information.ts). It is a loader: the overlay
checkout's code, styles and images come from Paddle's CDN (`sandbox-cdn` in sandbox), the checkout
itself is an iframe on `buy.paddle.com` (`sandbox-buy`), and the loader talks to Paddle's checkout
services. Paddle publishes no CSP list; the hosts below are the environment tables of the live bundle
as others have read them (UNCONFIRMED here: no network). Every source is an exact Paddle host, never a
wildcard, and no inline script or style is allowed: the page's own script is a file from 'self'.

Tests serve a stub Paddle.js from the Paddle stand-in. The page loads it only when PADDLE_API_BASE is a
loopback address *and* APP_ENV is not production: a production page always loads Paddle's own script
under the policy below, whatever PADDLE_API_BASE says.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from webhook_app.config import Settings

PADDLE_JS = "https://cdn.paddle.com/paddle/v2/paddle.js"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
HOSTS: dict[str, dict[str, tuple[str, ...]]] = {
    "production": {
        "cdn": ("https://cdn.paddle.com",),
        "frames": ("https://buy.paddle.com",),
        "services": (
            "https://buy.paddle.com",
            "https://create-checkout.paddle.com",
            "https://checkout-service.paddle.com",
            "https://api.paddle.com",
        ),
    },
    "sandbox": {
        "cdn": ("https://cdn.paddle.com", "https://sandbox-cdn.paddle.com"),
        "frames": ("https://sandbox-buy.paddle.com",),
        "services": (
            "https://sandbox-buy.paddle.com",
            "https://sandbox-create-checkout.paddle.com",
            "https://sandbox-checkout-service.paddle.com",
            "https://sandbox-api.paddle.com",
        ),
    },
}


@dataclass(frozen=True)
class PaddleJs:
    """The Paddle.js script the page loads, and the origins its policy allows."""

    url: str
    environment: str
    stand_in_origin: str | None = None  # tests only: the stand-in serving a stub of Paddle.js

    def content_security_policy(self) -> str:
        """The page's policy: our own files, Paddle's script, styles, images, services and checkout frame."""
        hosts = HOSTS[self.environment]
        scripts = (self.stand_in_origin,) if self.stand_in_origin else hosts["cdn"]
        directives = {
            "default-src": ("'none'",),
            "script-src": ("'self'", *scripts),
            "style-src": ("'self'", *hosts["cdn"]),
            "img-src": ("'self'", "data:", *hosts["cdn"]),
            "connect-src": hosts["services"],
            "frame-src": (*hosts["frames"], *hosts["cdn"]),  # the CDN serves the checkout's error frame
            "form-action": ("'self'",),
            "frame-ancestors": ("'none'",),
            "base-uri": ("'none'",),
        }
        return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def paddle_js(settings: Settings) -> PaddleJs:
    """Paddle's CDN script, or (outside production, PADDLE_API_BASE on loopback) the stand-in's stub."""
    environment = settings.paddle.environment
    base = settings.paddle.api_base
    if base and not settings.is_production:
        parts = urlsplit(base)
        if parts.hostname in LOOPBACK:
            origin = f"{parts.scheme}://{parts.netloc}"
            return PaddleJs(url=f"{base.rstrip('/')}/paddle.js", environment=environment, stand_in_origin=origin)
    return PaddleJs(url=PADDLE_JS, environment=environment)
