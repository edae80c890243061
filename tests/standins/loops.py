"""A stand-in for the Loops API: transactional emails, events, API key check, idempotency keys."""

from __future__ import annotations

import threading

from flask import Flask, jsonify, request

from tests.standins import Faults


class LoopsStandIn:
    """Records every accepted message; a repeated Idempotency-Key answers 409 like Loops.

    Fault knobs beyond `faults`: `reject_emails` answers 400 for those recipients (a permanent error,
    exempt from `faults`),
    `after_accept(message)` runs after a message is recorded and before the answer (e.g. to kill the
    sender in the window between "sent" and "recorded"). `conflicts` counts 409s, `rejections` 400s.
    """

    def __init__(self, api_key: str = "loops_test_key", faults: Faults | None = None):
        self.api_key = api_key
        self.faults = faults or Faults()
        self.messages: list[dict] = []
        self.keys: set[str] = set()
        self.requests = 0
        self.conflicts = 0
        self.reject_emails: set[str] = set()
        self.rejections: list[str] = []
        self.after_accept = None
        self._lock = threading.Lock()
        self.app = self._build()

    def _build(self) -> Flask:
        app = Flask("loops-standin")

        @app.before_request
        def _auth_and_faults():
            with self._lock:
                self.requests += 1
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return jsonify({"success": False, "message": "Invalid API key"}), 401
            if (request.get_json(silent=True) or {}).get("email") in self.reject_emails:
                return None  # a permanent refusal is answered as such, never masked by an injected fault
            status = self.faults.verdict()
            if status == 429:
                return jsonify({"success": False, "message": "Rate limit exceeded"}), 429, {"Retry-After": "1"}
            if status:
                return jsonify({"success": False, "message": "Internal error"}), 500
            return None

        def accept(kind: str):
            key = request.headers.get("Idempotency-Key")
            with self._lock:
                if key and key in self.keys:
                    self.conflicts += 1
                    return jsonify({"success": False, "message": "Idempotency key has already been used"}), 409
                email = (request.get_json(silent=True) or {}).get("email")
                if email in self.reject_emails:
                    self.rejections.append(email)
                    # Loops echoes the address it refuses: the adapter must scrub it before logging.
                    return jsonify({"success": False, "path": "email", "message": f"Invalid email: {email}"}), 400
                if key:
                    self.keys.add(key)
                message = {"kind": kind, "key": key, "body": request.get_json()}
                self.messages.append(message)
            if self.after_accept is not None:
                self.after_accept(message)
            return jsonify({"success": True})

        @app.post("/api/v1/transactional")
        def transactional():
            body = request.get_json(silent=True) or {}
            if body.get("transactionalId") in (None, "", "missing_template"):
                return jsonify(
                    {"success": False, "path": "transactionalId", "message": "Transactional email not found"}
                ), 404
            return accept("transactional")

        @app.post("/api/v1/events/send")
        def event():
            return accept("event")

        @app.get("/api/v1/api-key")
        def api_key():
            return jsonify({"success": True, "teamName": "Acme Cloud"})

        return app
