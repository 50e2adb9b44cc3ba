from fastapi.testclient import TestClient

from teleserve.core import migrate
from teleserve.web.app import create_app


def test_health_metrics_and_docs(engine, settings):
    client = TestClient(create_app(settings, engine))
    assert client.get("/healthz").json()["status"] == "ok"
    client.get("/healthz")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'teleserve_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in (
        metrics.text
    )
    assert client.get("/openapi.json").json()["info"]["title"] == "Teleserve"


def test_readiness_reports_pending_migrations(engine, settings):
    # The test database was built with create_all, not migrations: not at head.
    client = TestClient(create_app(settings, engine))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["expected_schema"] == migrate.head_revision(settings.database_url)
