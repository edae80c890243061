"""A stand-in for Slack incoming webhooks: records posts and answers like hooks.slack.com.

Answers (https://api.slack.com/messaging/webhooks, and Slack's 2016-05-17 changelog on webhook errors):
200 `ok`; 400 `invalid_payload` (not a JSON object), `missing_text_or_fallback_or_attachments` (no `text`,
`blocks` or `attachments`), `invalid_blocks` (blocks that are not a list of typed objects, or more than
50); 404 `no_service` for a webhook that does not exist or was revoked; 410 `channel_is_archived`; 429
`rate_limited` with `Retry-After`; 500 `rollup_error`. Bodies are plain text, as Slack's are.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from flask import Flask, Response, request

from tests.standins import Faults

HOOK = "/services/T0STANDIN/B0STANDIN/x9StandInWebhookToken0000"
MAX_BLOCKS = 50


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, mimetype="text/plain", headers=headers or {})


class SlackStandIn:
    """One workspace's incoming webhooks.

    Knobs: `revoked` (paths answering 404 no_service), `archived` (paths answering 410
    channel_is_archived), `script` (answers `(status, body, headers)` served first, one per request, before
    any other check), and `faults` (latency, 500s, 429s with Retry-After: 1, rate limit). `posts` records
    every accepted message as `{"path", "body"}`; `requests` counts every request.
    """

    def __init__(self, hooks: tuple[str, ...] = (HOOK,), faults: Faults | None = None) -> None:
        self.hooks = set(hooks)
        self.revoked: set[str] = set()
        self.archived: set[str] = set()
        self.faults = faults or Faults()
        self.script: deque[tuple[int, str, dict[str, str]]] = deque()
        self.posts: list[dict[str, Any]] = []
        self.requests = 0
        self._lock = threading.Lock()
        self.app = self._build()

    def url(self, base: str, path: str = HOOK) -> str:
        """The webhook URL for `path` on the served stand-in at `base`."""
        return base + path

    def _build(self) -> Flask:
        app = Flask("slack-standin")

        @app.post("/services/<team>/<bot>/<token>")
        def post(team: str, bot: str, token: str) -> Response:
            path = request.path
            with self._lock:
                self.requests += 1
                scripted = self.script.popleft() if self.script else None
            if scripted is not None:
                status, body, headers = scripted
                return _text(status, body, headers)
            if path not in self.hooks or path in self.revoked:
                return _text(404, "no_service")
            if path in self.archived:
                return _text(410, "channel_is_archived")
            verdict = self.faults.verdict()
            if verdict == 429:
                return _text(429, "rate_limited", {"Retry-After": "1"})
            if verdict:
                return _text(500, "rollup_error")
            try:
                payload = json.loads(request.get_data(as_text=True) or "null")
            except ValueError:
                return _text(400, "invalid_payload")
            if not isinstance(payload, dict):
                return _text(400, "invalid_payload")
            if not any(payload.get(key) for key in ("text", "blocks", "attachments")):
                return _text(400, "missing_text_or_fallback_or_attachments")
            blocks = payload.get("blocks", [])
            if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
                return _text(400, "invalid_blocks")
            if not all(isinstance(block, dict) and isinstance(block.get("type"), str) for block in blocks):
                return _text(400, "invalid_blocks")
            with self._lock:
                self.posts.append({"path": path, "body": payload})
            return _text(200, "ok")

        @app.route("/<path:anything>", methods=["GET", "POST", "PUT", "DELETE"])
        def elsewhere(anything: str) -> Response:
            with self._lock:
                self.requests += 1
            return _text(404, "no_service")

        return app
