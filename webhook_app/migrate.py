"""Schema migrations (Alembic), run by `webhook-app db upgrade` and the Procfile's release phase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from webhook_app.db import Database, describe_error, sqlite_path

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Applied:
    """What `upgrade` did: the migrations applied, oldest first, with their one-line descriptions."""

    revisions: tuple[tuple[str, str], ...]  # (revision id, description)
    created: bool  # a new SQLite file was created


@dataclass(frozen=True)
class SchemaProblem:
    """Why the database cannot be used now, and the fix, one line each."""

    message: str
    fix: str


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def upgrade(db: Database, revision: str = "head") -> Applied:
    """Apply migrations up to `revision` in one transaction; creates a missing SQLite file (only here)."""
    path = sqlite_path(db.url) if db.url else None
    created = path is not None and not path.exists()
    db.allow_create()
    before = _current(db)
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    after = _current(db)
    return Applied(_between(before, after), created)


def _current(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def _between(before: set[str], after: set[str]) -> tuple[tuple[str, str], ...]:
    """The revisions applied to go from `before` to `after`, oldest first, with their descriptions."""
    script = _script()
    done = set().union(*(_ancestors(script, rev) for rev in before))
    now = set().union(*(_ancestors(script, rev) for rev in after))
    applied = [rev for rev in script.walk_revisions() if rev.revision in now - done]  # newest first
    return tuple((rev.revision, _title(rev.doc)) for rev in reversed(applied))


def _title(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _ancestors(script: ScriptDirectory, revision: str) -> set[str]:
    """`revision` and every revision before it."""
    return {rev.revision for rev in script.iterate_revisions(revision, "base")}


def revision(db: Database, message: str) -> None:
    """Autogenerate a new migration from the models (a developer command)."""
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)


def pending_revisions(db: Database) -> list[str]:
    """Migrations not yet applied, oldest first; empty when the schema is current.

    Raises UnknownRevision when the database carries a revision this code does not know (a newer
    release migrated it).
    """
    script = _script()
    current = _current(db)
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = current - known
    if unknown:
        raise UnknownRevision(", ".join(sorted(unknown)))
    done = set().union(*(_ancestors(script, rev) for rev in current))
    return [rev.revision for rev in reversed(list(script.walk_revisions())) if rev.revision not in done]


class UnknownRevision(Exception):
    """The database was migrated by a newer release than this one."""


def schema_problem(db: Database) -> SchemaProblem | None:
    """None when the database is reachable and fully migrated; else what is wrong and the fix."""
    try:
        pending = pending_revisions(db)
    except SQLAlchemyError as exc:
        return SchemaProblem(*describe_error(db, exc))
    except UnknownRevision as exc:
        return SchemaProblem(
            f"the database at {db.where} was migrated by a newer release (revision {exc})",
            "deploy the release that matches the database, or point DATABASE_URL at this release's database",
        )
    if pending:
        return SchemaProblem(
            f"the database at {db.where} is not migrated ({len(pending)} migration(s) pending: {', '.join(pending)})",
            "run `webhook-app db upgrade`",
        )
    return None
