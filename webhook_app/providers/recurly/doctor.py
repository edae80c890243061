"""Recurly's doctor lines: the webhook secret, the API key and its site, and two admin settings the API
cannot show (Recurly's own dunning emails, Hosted Account Management).

What is confirmable through the API: the key (`GET /sites` answers), the site's mode and subdomain
(so RECURLY_SUBDOMAIN can be compared). What is not: whether Recurly's dunning emails are off and
whether Hosted Account Management is enabled (v2021-02-25 has no endpoint for either), so those two
lines are warnings that say where to look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webhook_app.errors import ConfigurationNeeded, RecoveryError
from webhook_app.ops.doctor import FAIL, OK, WARN, Check
from webhook_app.providers.recurly.billing import RecurlyBilling
from webhook_app.services import Services

if TYPE_CHECKING:
    from webhook_app.providers.recurly import RecurlyProvider

KEY_FIX = "set RECURLY_API_KEY to a private API key from Integrations > API Credentials in Recurly's admin"


def checks(svc: Services, provider: RecurlyProvider) -> list[Check]:
    """Recurly's lines, in the order an operator fixes things."""
    settings = svc.settings.recurly
    lines = [_webhook_secret(svc, len(settings.webhook_secrets))]
    reads = provider.reads
    if not isinstance(reads, RecurlyBilling):
        lines.append(Check("recurly key", FAIL, "RECURLY_API_KEY is not set", KEY_FIX))
        lines.append(Check("recurly subdomain", WARN, "not checked: needs RECURLY_API_KEY"))
    else:
        lines.extend(_key_and_site(reads, settings.subdomain))
    lines.append(
        Check(
            "recurly dunning emails",
            WARN,
            "cannot be checked through Recurly's API: if Recurly still emails past-due customers, "
            "they get two emails for each failure",
            "in Recurly's admin, the Email Templates page: disable the dunning (past-due) emails of every "
            "dunning campaign (Configuration > Dunning Management lists them); keep Recurly's retries",
        )
    )
    lines.append(
        Check(
            "recurly hosted pages",
            WARN,
            "cannot be checked through Recurly's API: recovery links open the account's hosted "
            "'Edit Billing Info' page, which is a 404 while Hosted Account Management is disabled",
            "in Recurly's admin, Configuration > Hosted Page Settings > Account Management Pages: "
            "enable it (Account Login or Guest View Only both serve the page)",
        )
    )
    return lines


def _webhook_secret(svc: Services, count: int) -> Check:
    if count:
        url = f"{svc.settings.links.public_url}/webhooks/recurly" if svc.settings.links.public_url else None
        where = f"; the endpoint's URL is {url}" if url else ""
        return Check("recurly webhook secret", OK, f"{count} signing secret(s) set{where}")
    return Check(
        "recurly webhook secret",
        FAIL,
        "RECURLY_WEBHOOK_SECRET is not set: every delivery is refused (503)",
        "in Recurly's admin, Integrations > Webhooks: a JSON endpoint for <PUBLIC_URL>/webhooks/recurly; "
        "set RECURLY_WEBHOOK_SECRET to its signing secret",
    )


def _key_and_site(reads: RecurlyBilling, subdomain: str | None) -> list[Check]:
    try:
        site = reads.client.current_site()
    except ConfigurationNeeded as exc:
        return [Check("recurly key", FAIL, str(exc), KEY_FIX), Check("recurly subdomain", WARN, "not checked")]
    except RecoveryError as exc:
        return [
            Check("recurly key", FAIL, f"could not reach Recurly: {exc}", "check the network and RECURLY_API_BASE"),
            Check("recurly subdomain", WARN, "not checked"),
        ]
    site_subdomain = site.get("subdomain") if isinstance(site.get("subdomain"), str) else None
    mode = site.get("mode") if isinstance(site.get("mode"), str) else "unknown mode"
    rows = "live" if mode == "production" else "test"
    lines = [Check("recurly key", OK, f"valid for site {site_subdomain or '(unknown)'} ({mode}: {rows} rows)")]
    if not subdomain:
        lines.append(
            Check(
                "recurly subdomain",
                FAIL,
                "RECURLY_SUBDOMAIN is not set: recovery links cannot open Recurly's hosted page",
                f"set RECURLY_SUBDOMAIN={site_subdomain}" if site_subdomain else "set RECURLY_SUBDOMAIN",
            )
        )
    elif site_subdomain and subdomain.lower() != site_subdomain.lower():
        lines.append(
            Check(
                "recurly subdomain",
                FAIL,
                f"RECURLY_SUBDOMAIN is {subdomain} but the key belongs to site {site_subdomain}",
                f"set RECURLY_SUBDOMAIN={site_subdomain} (or the key of site {subdomain})",
            )
        )
    else:
        lines.append(
            Check("recurly subdomain", OK, f"{subdomain}: links open https://{subdomain}.recurly.com/account/...")
        )
    return lines
