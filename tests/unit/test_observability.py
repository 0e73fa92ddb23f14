"""Logs redact credentials in the text format too; the Grafana dashboard charts metrics that exist."""

import json
import logging
import re
from pathlib import Path

from uvicorn.logging import AccessFormatter, DefaultFormatter

from gateway.logs import ContextFilter, logging_config
from gateway.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]


def test_text_logs_redact_tickets_in_uvicorn_lines() -> None:
    config = logging_config("text", "info")
    websocket = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]', ("127.0.0.1:5", "/v1/ws?ticket=T1cket.x&a=1"), None)
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", "/v1/sessions/s/events?token=T0ken&ticket=T2", "1.1", 200), None
    )
    for record in (websocket, access):
        assert ContextFilter().filter(record)
    lines = [DefaultFormatter(config["formatters"]["default"]["fmt"]).format(websocket), AccessFormatter(config["formatters"]["access"]["fmt"]).format(access)]
    assert "/v1/ws?ticket=[redacted]&a=1" in lines[0]
    assert "events?token=[redacted]&ticket=[redacted]" in lines[1]
    assert not any(secret in line for line in lines for secret in ("T1cket", "T0ken", "T2"))


def test_dashboard_charts_only_metrics_the_gateway_exports() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    charted = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"gateway_\w+", t["expr"])}
    exported = set(re.findall(r"^(gateway_\w+)", GatewayMetrics().exposition().decode(), re.M))
    assert charted and charted <= exported, sorted(charted - exported)
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", m) for m in exported}
    assert families <= {re.sub(r"_(total|bucket|sum|count|created)$", "", m) for m in charted}, "a metric the dashboard doesn't show"
