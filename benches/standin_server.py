"""Run one stand-in (Stripe or Loops, from tests/standins) in its own process, for benchmarks.

A benchmark's load must not share a GIL with the servers it waits on, so each stand-in gets a process:
    python -m benches.standin_server --kind stripe --port 8101 --latency 0.1 --rate-limit 25

Besides the stand-in's own API (with its `Faults`: latency, rate limit), `/_bench/...` is a control
surface that bypasses the faults: load invoices, read counters (status codes per path, first and last
request times), reset them.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections import Counter

from flask import Flask, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from tests.standins import Faults


class Stats:
    """Answers per (path kind, status) and the times of the first and last answered request."""

    def __init__(self):
        self.lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.counts: Counter = Counter()
        self.first_ok: float | None = None
        self.last_ok: float | None = None
        self.first: float | None = None
        self.last: float | None = None

    def reset(self) -> None:
        with self.lock:
            self._clear()

    def record(self, path: str, status: int) -> None:
        now = time.time()
        kind = path.rstrip("/").split("/")[-1] if not path.startswith("/v1/invoices/") else "invoice"
        with self.lock:
            self.counts[f"{kind} {status}"] += 1
            self.first = self.first or now
            self.last = now
            if 200 <= status < 300:
                self.first_ok = self.first_ok or now
                self.last_ok = now

    def as_dict(self) -> dict:
        with self.lock:
            ok = sum(n for k, n in self.counts.items() if k.split()[-1].startswith("2"))
            throttled = sum(n for k, n in self.counts.items() if k.endswith(" 429"))
            return {
                "counts": dict(self.counts),
                "ok": ok,
                "throttled": throttled,
                "total": sum(self.counts.values()),
                "first_ok": self.first_ok,
                "last_ok": self.last_ok,
                "first": self.first,
                "last": self.last,
            }


def _synthesize_invoices(standin, app: Flask) -> None:
    """Answer for invoices nobody loaded: `in_<run>_<n>` is an open, failed invoice of `cus_<run>_<n>`,
    as the ack benchmark's deliveries describe them (so a run of 40,000 deliveries needs no loading)."""
    from tests.fixtures.stripe_objects import invoice

    @app.before_request
    def _synthesize():
        parts = request.path.split("/")
        if len(parts) == 4 and parts[:3] == ["", "v1", "invoices"] and parts[3].startswith("in_"):
            invoice_id = parts[3]
            if invoice_id not in standin.invoices:
                suffix = invoice_id[len("in_") :]
                standin.add_invoice(
                    invoice(invoice_id=invoice_id, customer=f"cus_{suffix}", email=f"customer-{suffix}@example.com")
                )


def build(kind: str, faults: Faults, *, synthesize: bool = False):
    """The stand-in's WSGI app with `/_bench` mounted beside it."""
    if kind == "stripe":
        from tests.standins.stripe import StripeStandIn

        standin = StripeStandIn(faults=faults)
        if synthesize:
            _synthesize_invoices(standin, standin.app)
    else:
        from tests.standins.loops import LoopsStandIn

        standin = LoopsStandIn(faults=faults)
    stats = Stats()

    @standin.app.after_request
    def _count(response):
        stats.record(request.path, response.status_code)
        return response

    control = Flask(f"{kind}-control")

    @control.post("/invoices")
    def load_invoices():
        for invoice in request.get_json():
            standin.invoices[invoice["id"]] = invoice
        return jsonify({"invoices": len(standin.invoices)})

    @control.get("/stats")
    def get_stats():
        data = stats.as_dict()
        data["messages"] = len(getattr(standin, "messages", ()))
        data["portal_sessions"] = len(getattr(standin, "portal_sessions", ()))
        data["distinct_message_keys"] = len({m.get("key") for m in getattr(standin, "messages", ())})
        return jsonify(data)

    @control.post("/reset")
    def reset():
        stats.reset()
        return jsonify({"ok": True})

    @control.get("/healthz")
    def healthz():
        return "ok"

    return standin, DispatcherMiddleware(standin.app, {"/_bench": control})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=("stripe", "loops"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--synthesize-invoices", action="store_true", help="answer for unknown in_<run>_<n>")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    faults = Faults(latency=args.latency, rate_limit=args.rate_limit)
    standin, app = build(args.kind, faults, synthesize=args.synthesize_invoices)
    standin.base_url = f"http://127.0.0.1:{args.port}"
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
