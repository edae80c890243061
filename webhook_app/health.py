"""`/healthz` (the process is up) and `/readyz` (it can accept and act on webhooks now)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webhook_app import readiness
from webhook_app.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answers as long as the process serves requests."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: 200 only when webhooks can be accepted and acted on; else 503 naming every problem.

    Checked in every mode: the database (reachable, migrated), a billing provider set up with the
    secrets its webhook and API need, the email tool's credentials, and in production SECRET_KEY,
    PUBLIC_URL and a real email tool. The body names variables, never their values.
    """
    svc = services()
    problems = readiness.problems(svc)
    body = {
        "status": "unavailable" if problems else "ready",
        "problems": [p.message for p in problems],
        "fixes": [p.fix for p in problems],
        "database": next((p.message for p in problems if p.subject == "database"), "ok"),
    }
    return jsonify(body), 503 if problems else 200
