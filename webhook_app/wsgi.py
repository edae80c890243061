"""The WSGI entry point for gunicorn (Procfile `web`): the app, plus the embedded worker when
`WORKER_MODE=embedded` (each gunicorn process imports this after forking, so each runs one)."""

from webhook_app import create_app
from webhook_app.services import services
from webhook_app.worker import start_embedded

app = create_app()

with app.app_context():
    _svc = services()
    if _svc.settings.worker.mode == "embedded":
        start_embedded(_svc)
