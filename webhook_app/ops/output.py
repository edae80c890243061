"""What every command prints goes through here: configured secrets never reach the terminal."""

from __future__ import annotations

import click

from webhook_app.observability import scrub
from webhook_app.services import Services


def scrubbed(svc: Services, text: str) -> str:
    """`text` without any configured secret (provider error texts can echo what they were sent)."""
    return scrub(text, svc.settings.secrets())


def fail(svc: Services, message: str) -> click.ClickException:
    """A ClickException (exit 1) whose text is scrubbed of every configured secret."""
    return click.ClickException(scrubbed(svc, message))
