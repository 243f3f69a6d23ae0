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
