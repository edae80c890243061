"""What the service needs before it can accept and act on webhooks, and who may start without it.

One list, used three ways:
- `/readyz` answers 503 naming every problem while any is left (in every mode), 200 only without;
- with `APP_ENV=production` the web and worker processes refuse to start, naming each one
  (`refuse_to_start`), instead of looking healthy while refusing every event;
- `doctor` shows each on its own line.
The checks run over every enabled provider through the `Provider` port (`missing_for_intake`,
`missing_for_sending`): a new billing provider is covered without a line here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from webhook_app.config import Settings

if TYPE_CHECKING:
    from webhook_app.providers.base import Provider
    from webhook_app.services import Services

log = logging.getLogger(__name__)

PRODUCTION_ONLY = ("SECRET_KEY", "PUBLIC_URL", "MESSAGING_PROVIDER")


@dataclass(frozen=True)
class Problem:
    """One thing in the way, named: `subject` is the variable (or "database", "billing provider")."""

    subject: str
    message: str
    fix: str


class StartupRefused(RuntimeError):
    """Production start-up with essentials missing; the message names every one."""

    def __init__(self, process: str, problems: list[Problem]):
        self.process = process
        self.problems = problems
        names = "; ".join(p.message for p in problems)
        super().__init__(
            f"APP_ENV=production: the {process} process will not start until these are fixed: {names} "
            "(`webhook-app doctor` shows each with its fix)"
        )


def _malformed(settings: Settings, name: str) -> str | None:
    """The settings problem about `name`, when the variable is set but malformed."""
    for problem in settings.problems:
        if problem.split(" ", 1)[0] == name:
            return problem
    return None


def _variable(settings: Settings, name: str, consequence: str, fix: str) -> Problem:
    malformed = _malformed(settings, name)
    message = f"{malformed}: {consequence}" if malformed else f"{name} is not set: {consequence}"
    return Problem(name, message, fix)


def configuration_problems(settings: Settings, providers: Iterable[Provider]) -> list[Problem]:
    """What keeps the service from accepting or acting on webhooks, for this mode, in fix order."""
    problems: list[Problem] = []
    providers = list(providers)
    enabled = [p for p in providers if p.enabled]
    if not enabled:
        labels = ", ".join(p.label for p in providers)
        problems.append(
            Problem(
                "billing provider",
                f"no billing provider is set up ({labels}): every webhook is refused",
                "set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET (or another provider's variables, see the README)",
            )
        )
    for provider in enabled:
        for name in provider.missing_for_intake():
            problems.append(
                _variable(
                    settings,
                    name,
                    f"{provider.label} deliveries are refused (503)",
                    f"set {name} (see the README's {provider.label} section)",
                )
            )
        for name in provider.missing_for_sending():
            problems.append(
                _variable(
                    settings,
                    name,
                    f"{provider.label} events cannot be acted on",
                    f"set {name} (see the README's {provider.label} section)",
                )
            )
    for name in settings.missing_for_sending():
        problems.append(
            _variable(
                settings,
                name,
                f"no message can be sent through {settings.messaging_provider} (they wait, held)",
                f"set {name}",
            )
        )
    if settings.is_production:
        problems.extend(_production(settings))
    # One line per variable, even when two providers (or intake and sending) need the same one.
    unique: dict[str, Problem] = {}
    for problem in problems:
        unique.setdefault(problem.subject, problem)
    return list(unique.values())


def _production(settings: Settings) -> list[Problem]:
    """What production needs on top of what the mode-independent checks ask for."""
    problems = []
    if not settings.links.secret_key:
        problems.append(
            _variable(
                settings,
                "SECRET_KEY",
                "recovery links would be signed with the development secret",
                "set SECRET_KEY to a long random value, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            )
        )
    if not settings.links.public_url:
        problems.append(
            _variable(
                settings,
                "PUBLIC_URL",
                "emails cannot carry durable /r/<token> links",
                "set PUBLIC_URL to this app's public https base URL",
            )
        )
    if settings.messaging_provider == "console":
        problems.append(
            Problem(
                "MESSAGING_PROVIDER",
                _malformed(settings, "MESSAGING_PROVIDER")
                or "MESSAGING_PROVIDER is console: messages are only logged, nobody is emailed",
                "set MESSAGING_PROVIDER=loops (LOOPS_API_KEY) or intercom (INTERCOM_ACCESS_TOKEN)",
            )
        )
    # Any other malformed variable: production runs only on exactly what the operator wrote.
    for problem in settings.problems:
        name = problem.split(" ", 1)[0]
        problems.append(Problem(name, problem, "correct the variable (see the README's environment table)"))
    return problems


def database_problems(svc: Services) -> list[Problem]:
    """The database, reachable and migrated (none when it is)."""
    from webhook_app.migrate import schema_problem

    problem = schema_problem(svc.db)
    return [Problem("database", problem.message, problem.fix)] if problem else []


def problems(svc: Services) -> list[Problem]:
    """Everything keeping the service from accepting and acting on webhooks now (`/readyz`)."""
    return configuration_problems(svc.settings, svc.providers.values()) + database_problems(svc)


def refuse_to_start(svc: Services, process: str) -> list[Problem]:
    """In production, raise StartupRefused naming every missing or malformed essential; elsewhere
    return them (the process starts, warns, and /readyz answers 503 until they are fixed).

    The database is not checked: a server restarting is a reason to wait (and answer 503 on /readyz),
    not to refuse to start.
    """
    found = configuration_problems(svc.settings, svc.providers.values())
    if found and svc.settings.is_production:
        raise StartupRefused(process, found)
    return found


def log_problems(svc: Services, found: list[Problem]) -> None:
    """Log each problem on its own line, then the malformed settings that fell back to a default."""
    for problem in found:
        log.error("not ready: %s (fix: %s)", problem.message, problem.fix)
    named = {problem.subject for problem in found}
    for text in svc.settings.problems:
        if text.split(" ", 1)[0] not in named:
            log.error("configuration problem: %s (the default is used until it is corrected)", text)
