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


def test_dashboard_page_is_served_with_its_scripts_under_a_strict_csp(client: TestClient) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert '<script type="module" src="/dashboard/assets/dashboard.js">' in response.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
    scripts = ["dashboard.js", "api.js", "dom.js", "charts.js", "sweep.js", "candidate.js"]
    for name in scripts:
        asset = client.get(f"/dashboard/assets/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith("text/javascript")
        # text is only ever set as text: no HTML parsing sinks in the dashboard's code
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in asset.text, (name, sink)
    assert "/v1/sweeps/" in client.get("/dashboard/assets/sweep.js").text
    assert (
        client.get("/dashboard/assets/dashboard.css").headers["content-type"].startswith("text/css")
    )
    for bad in ("../settings.py", "dashboard.html", "nope.js"):
        missing = client.get(f"/dashboard/assets/{bad}")
        assert missing.status_code == 404, bad
        assert missing.json()["error"] in ("AssetNotFound", "NotFound")
