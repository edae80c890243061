"""What every command prints goes through here: configured secrets never reach the terminal, and an
expected failure (a database not migrated, unreachable or missing; a provider refusing; production
start-up refused) is one line saying what is wrong and the fix, with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import ScriptInfo
from sqlalchemy.exc import SQLAlchemyError

from webhook_app.observability import scrub
from webhook_app.services import Services

F = TypeVar("F", bound=Callable[..., Any])


def _current_services() -> Services | None:
    """The app's services, also after `with_appcontext` has popped its context (an error on the way out)."""
    if current_app:
        return current_app.extensions.get("webhook_app")
    ctx = click.get_current_context(silent=True)
    info = ctx.find_object(ScriptInfo) if ctx is not None else None
    if info is None:
        return None
    try:
        return info.load_app().extensions.get("webhook_app")
    except Exception:  # no app to be had: report without it
        return None


def _secrets() -> tuple[str, ...]:
    svc = _current_services()
    return svc.settings.secrets() if svc is not None else ()


def scrubbed(svc: Services, text: str) -> str:
    """`text` without any configured secret (provider error texts can echo what they were sent)."""
    return scrub(text, svc.settings.secrets())


def fail(svc: Services, message: str) -> click.ClickException:
    """A ClickException (exit 1) whose text is scrubbed of every configured secret."""
    return click.ClickException(scrubbed(svc, message))


def problem(message: str, fix: str) -> click.ClickException:
    """One line: what is wrong, then the fix (exit 1), scrubbed."""
    return click.ClickException(scrub(f"{message}. Fix: {fix}", _secrets()))


def needs_database(command: F) -> F:
    """Run the command only against a reachable, fully migrated database; else one line with the fix."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        from webhook_app.migrate import schema_problem
        from webhook_app.services import services

        found = schema_problem(services().db)
        if found is not None:
            raise problem(found.message, found.fix)
        return command(*args, **kwargs)

    return checked  # type: ignore[return-value]


def expected_errors(command: F) -> F:
    """Turn the failures an operator can fix into one line with the fix (bugs still show a traceback)."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from webhook_app.db import describe_error
        from webhook_app.errors import RecoveryError
        from webhook_app.readiness import StartupRefused

        try:
            return command(*args, **kwargs)
        except SQLAlchemyError as exc:
            svc = _current_services()
            if svc is None:
                raise problem("the database failed", "check DATABASE_URL, then run `webhook-app doctor`") from None
            raise problem(*describe_error(svc.db, exc)) from None
        except StartupRefused as exc:
            raise click.ClickException(str(exc)) from None
        except RecoveryError as exc:
            raise click.ClickException(scrub(str(exc), _secrets())) from None
        finally:
            # The command is over: close its pooled connections now rather than at interpreter exit
            # (an in-process caller, such as a test runner or a shell, goes on without them).
            svc = _current_services()
            if svc is not None:
                svc.db.dispose()

    return guarded  # type: ignore[return-value]


def guard_every_command(group: click.Group) -> None:
    """Wrap every command of `group` (and its subgroups) in `expected_errors`, providers' included."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            guard_every_command(command)
        elif command.callback is not None and not getattr(command.callback, "_guarded", False):
            command.callback = expected_errors(command.callback)
            command.callback._guarded = True  # type: ignore[attr-defined]
