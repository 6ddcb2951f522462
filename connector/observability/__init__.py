"""What operators and orchestrators watch: health probes, Prometheus metrics, JSON logs."""

from connector.observability.health import Health
from connector.observability.logs import configure_logging, log_context
from connector.observability.metrics import add_metrics

__all__ = ["Health", "add_metrics", "configure_logging", "log_context"]
