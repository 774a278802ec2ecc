"""``gateway console``: the web console alone, without ingestion (beside a running gateway, or for reading)."""
from __future__ import annotations

import signal
import threading
from typing import Annotated, Optional

import structlog
import typer

from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, fail, load_or_exit, open_database
from gateway.errors import GatewayError

app = typer.Typer()


@app.command()
def console(config: ConfigOption = DEFAULT_CONFIG, db: DbOption = None,
            port: Annotated[Optional[int], typer.Option(help="Listen on this port instead of the configured console "
                                                             "port (0: any free one).")] = None) -> None:
    """Serve the web console alone (no mail is taken) until SIGTERM/SIGINT; admin changes reach the running
    gateway as a reload (SIGHUP to the pid in its pid file)."""
    from gateway.console.server import ConsoleServer
    from gateway.console.standalone import standalone
    from gateway.logs import configure_logging

    settings = load_or_exit(config)
    configure_logging(settings.gateway.log_level, settings.gateway.log_format)
    database = open_database(settings, db)
    database.upgrade()
    endpoint = settings.console if port is None else settings.console.model_copy(update={"port": port})
    try:
        server = ConsoleServer(endpoint, standalone(config, database))
    except GatewayError as exc:
        fail(str(exc))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server.start()
    structlog.get_logger("gateway.console").info(
        "console started", console=f"{server.scheme}://{endpoint.host}:{server.bound_port}",
        database=database.engine.url.render_as_string())
    stopping.wait()
    server.stop()
    database.dispose()
