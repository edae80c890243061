"""A stand-in for the Intercom API: contact search/create, data events, and `/me`."""

from __future__ import annotations

import itertools
import threading

from flask import Flask, jsonify, request

from tests.standins import Faults


class IntercomStandIn:
    """Keeps contacts and events; de-duplicates events on (contact, name, created_at, metadata) as Intercom does."""

    def __init__(self, token: str = "intercom_test_token", faults: Faults | None = None):
        self.token = token
        self.faults = faults or Faults()
        self.contacts: list[dict] = []
        self.events: list[dict] = []
        self._seen: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build()

    def _build(self) -> Flask:
        app = Flask("intercom-standin")

        @app.before_request
        def _auth_and_faults():
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return jsonify(
                    {"type": "error.list", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]}
                ), 401
            status = self.faults.verdict()
            if status:
                return jsonify(
                    {
                        "type": "error.list",
                        "errors": [
                            {"code": "server_error" if status == 500 else "rate_limit_exceeded", "message": "try later"}
                        ],
                    }
                ), status
            return None

        @app.post("/contacts/search")
        def search():
            query = (request.get_json() or {}).get("query", {})
            field, value = query.get("field"), query.get("value")
            found = [c for c in self.contacts if c.get(field) == value]
            return jsonify({"type": "list", "data": found, "total_count": len(found)})

        @app.post("/contacts")
        def create():
            body = request.get_json() or {}
            with self._lock:
                contact = {
                    "type": "contact",
                    "id": f"contact_{next(self._ids)}",
                    "role": body.get("role", "user"),
                    "external_id": body.get("external_id"),
                    "email": body.get("email"),
                }
                self.contacts.append(contact)
            return jsonify(contact)

        @app.post("/events")
        def event():
            body = request.get_json() or {}
            key = repr(
                (
                    body.get("id") or body.get("user_id") or body.get("email"),
                    body.get("event_name"),
                    body.get("created_at"),
                    sorted((body.get("metadata") or {}).items(), key=str),
                )
            )
            with self._lock:
                if key not in self._seen:
                    self._seen.add(key)
                    self.events.append(body)
            return "", 202

        @app.get("/me")
        def me():
            return jsonify(
                {"type": "admin", "id": "1", "app": {"name": "Acme Cloud", "id_code": "abc123", "region": "US"}}
            )

        return app
