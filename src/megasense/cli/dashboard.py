"""``megasense dashboard``: serve an interactive page over an analysis directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors
from megasense.errors import MissingExtraError

console = Console()


def dashboard(
    directory: Annotated[
        Path, typer.Argument(help="A directory made by `megasense analyze` or by `megasense market`.")
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Filter an analysis by time, topic, sentiment, group and text; charts and documents update.

    Example:

      megasense dashboard reviews-analysis --port 8000    # then open http://127.0.0.1:8000

      megasense dashboard stocknet-run    # a market run: strategies, calibration, event study, price + sentiment
    """
    with user_errors():
        try:
            import uvicorn

            from megasense.analytics.dashboard import create_dashboard_app
        except ModuleNotFoundError as exc:
            if (exc.name or "megasense").split(".")[0] == "megasense":
                raise  # a module of megasense itself: a bug
            raise MissingExtraError(
                f"megasense dashboard needs the 'serve' and 'analytics' extras ({exc.name} is not installed): "
                "pip install 'megasense[serve,analytics]'"
            ) from None
        from megasense.market.store import is_market_dir

        if is_market_dir(directory):  # a `megasense market` directory: its own pages, the same Host rule
            from megasense.analytics.dashboard import allowed_hosts, host_name
            from megasense.market.dashboard import create_market_app

            hosts = allowed_hosts(host)
            app = create_market_app(directory, host_ok=None if hosts is None else lambda h: host_name(h) in hosts)
        else:
            app = create_dashboard_app(directory, host=host)  # answers Host: <host> or a loopback name only
        console.print(f"dashboard for {directory} at http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
