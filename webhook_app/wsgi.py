"""The WSGI entry point for gunicorn (Procfile `web`): the app, plus the embedded worker when
`WORKER_MODE=embedded` (each gunicorn process imports this after forking, so each runs one).

With APP_ENV=production a missing or malformed essential stops the process here, named, before it
serves anything (gunicorn.conf.py checks the same in the master first, so gunicorn exits cleanly).
"""

from webhook_app import create_app, readiness
from webhook_app.config import load_dotenv
from webhook_app.embedded import start_embedded
from webhook_app.services import services

load_dotenv()  # `.env`, as `webhook-app` commands read it (variables already set win)
app = create_app()

with app.app_context():
    _svc = services()
    readiness.log_problems(_svc, readiness.refuse_to_start(_svc, "web"))
    if _svc.settings.worker.mode == "embedded":
        start_embedded(_svc)
