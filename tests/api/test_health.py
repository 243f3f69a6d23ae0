from fastapi.testclient import TestClient


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    body = client.get("/metrics").text
    assert 'tunegate_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in body
    assert 'tunegate_evaluations{status="queued"} 0.0' in body


def test_unknown_route_is_json_error(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_dashboard_page_is_served_and_reads_the_api(client: TestClient) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/v1/sweeps/" in response.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
