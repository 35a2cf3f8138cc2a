"""Entry point of the gateway: ``gridsim-gateway`` or ``python -m gridsim_gateway``."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gridsim_gateway.main import SERVICE, create_app
from gridsim_gateway.settings import Settings
from gridsim_shared.logging import configure_logging


def main() -> None:
    """Console script: serve the gateway with uvicorn (which handles SIGTERM and SIGINT)."""
    settings = Settings()
    configure_logging(settings.log, SERVICE)
    failures: list[str] = []

    def on_fatal(reason: str) -> None:
        # A supervised task crashed beyond its budget: stop serving and exit non-zero (restarted).
        failures.append(reason)
        server.should_exit = True

    config = uvicorn.Config(
        create_app(settings, on_fatal),
        host=settings.gateway.host,
        port=settings.gateway.port,
        log_config=None,
        access_log=False,
        # Live streams (SSE) never end on their own; don't let them hold a shutdown.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run()
    if failures:
        logging.getLogger(SERVICE).critical("gateway failed: %s; exiting non-zero", failures[0])
        sys.exit(1)


if __name__ == "__main__":
    main()
