"""A stand-in for the Loops API: transactional emails, events, API key check, idempotency keys.

Served over real HTTP (see `tests.standins.serve`) for integration, end-to-end and reliability tests
and the benchmarks (`benches/standin_server.py`).
"""

from __future__ import annotations

import threading

from flask import Flask, jsonify, request

from tests.standins import Faults
from tests.standins.crash import CRASH_HEADER


class LoopsStandIn:
    """Records every accepted message; a repeated Idempotency-Key answers 409 like Loops.

    Fault knobs beyond `faults` (random latency, 500s, 429s, timeouts):
    - `key_valid = False` answers 401 to everything;
    - `throttle` answers that many 429s to sends before accepting again (`retry_after` is the
      Retry-After header sent with every 429; Loops documents none, so the adapter's default applies
      when it is None);
    - `reject_emails` answers 400 for those recipients (a permanent error, exempt from `faults`);
    - `crash_after = n`: once `n` messages are accepted, the sender "dies" (`tests.standins.crash`):
      before Loops gets the next message (`crash_before_answer`, the default) or just after Loops
      accepted the n-th one; until `revive()`, every send dies the same way;
    - `after_accept(message)` runs after a message is recorded and before the answer (e.g. to kill a
      real sender process in the window between "sent" and "recorded").
    `requests` counts requests, `conflicts` 409s, `rejections` the 400s' recipients.
    """

    def __init__(self, api_key: str = "loops_test_key", faults: Faults | None = None):
        self.api_key = api_key
        self.faults = faults or Faults()
        self.key_valid = True
        self.messages: list[dict] = []  # {"kind": "transactional" | "event", "key", "body"}
        self.keys: set[str] = set()
        self.requests = 0
        self.conflicts = 0
        self.throttle = 0
        self.retry_after: str | None = "1"
        self.reject_emails: set[str] = set()
        self.rejections: list[str] = []
        self.crash_after: int | None = None
        self.crash_before_answer = True
        self.dead = False
        self.after_accept = None
        self._lock = threading.Lock()
        self.app = self._build()

    def emails(self) -> list[str]:
        """The recipient of every accepted message (one entry per email Loops would send)."""
        return [m["body"].get("email") for m in self.messages]

    def revive(self) -> None:
        """A new sender process: no more crashing."""
        self.dead, self.crash_after = False, None

    def _throttled(self):
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return jsonify({"success": False, "message": "Rate limit exceeded"}), 429, headers

    def _crash(self, reason: str):
        # Only a sender inside `dying_on_signal()` dies on this; any other client sees a 503.
        self.dead = True
        return jsonify({"success": False, "message": "the sender died"}), 503, {CRASH_HEADER: reason}

    def _build(self) -> Flask:
        app = Flask("loops-standin")

        @app.before_request
        def _auth_and_faults():
            if not request.path.startswith("/api/"):
                return None  # pages a stand-in's user adds (the demo's) are not Loops' API
            with self._lock:
                self.requests += 1
            if not self.key_valid or request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return jsonify({"success": False, "message": "Invalid API key"}), 401
            if request.method == "POST":
                with self._lock:
                    if self.throttle > 0:
                        self.throttle -= 1
                        return self._throttled()
            if (request.get_json(silent=True) or {}).get("email") in self.reject_emails:
                return None  # a permanent refusal is answered as such, never masked by an injected fault
            status = self.faults.verdict()
            if status == 429:
                return self._throttled()
            if status:
                return jsonify({"success": False, "message": "Internal error"}), 500
            return None

        def accept(kind: str):
            key = request.headers.get("Idempotency-Key")
            with self._lock:
                if self.dead:
                    return self._crash("the sender is gone")
                if self.crash_after is not None and self.crash_before_answer and len(self.messages) >= self.crash_after:
                    return self._crash("killed before Loops got the message")
                email = (request.get_json(silent=True) or {}).get("email")
                if email in self.reject_emails:
                    self.rejections.append(email)
                    # Loops echoes the address it refuses: the adapter must scrub it before logging.
                    return jsonify({"success": False, "path": "email", "message": f"Invalid email: {email}"}), 400
                if key and key in self.keys:
                    self.conflicts += 1
                    return jsonify({"success": False, "message": "Idempotency key has already been used"}), 409
                if key:
                    self.keys.add(key)
                message = {"kind": kind, "key": key, "body": request.get_json()}
                self.messages.append(message)
                if (
                    self.crash_after is not None
                    and not self.crash_before_answer
                    and len(self.messages) >= self.crash_after
                ):
                    return self._crash("killed after Loops accepted the message, before it was recorded")
            if self.after_accept is not None:
                self.after_accept(message)
            return jsonify({"success": True, "id": f"msg_{len(self.messages)}"})

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
