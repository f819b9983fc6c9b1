"""The ``citycode`` command. JSON on standard output; exit 0 success or all accepted,
1 a code refused, 2 a usage or input error (message on standard error).

The entry point holds ``init`` and ``serve``; each domain's commands come from its own ``cli`` module."""

from __future__ import annotations

import os

import click

from codeservice.accesslog import cli as accesslog_cli
from codeservice.certificates import cli as certificates_cli
from codeservice.cli import verify as verify_cli
from codeservice.cli.common import echo_json, fail, load_services
from codeservice.clients import cli as clients_cli
from codeservice.consent import cli as consent_cli
from codeservice.identity import cli as identity_cli
from codeservice.transit import cli as transit_cli
from codeservice.wsgi import serve as run_gunicorn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="citycode")
def main() -> None:
    """citycode: the city's one code. Settings come from CITYCODE_* environment variables."""


@main.command()
def init() -> None:
    """Create the data directory, database schema, keys and demo residents (idempotent)."""
    services = load_services(initialise=False)
    try:
        echo_json(services.initialise())
    except Exception as exc:
        fail(f"cannot initialise {services.settings.home}: {exc.__class__.__name__}: {exc}", "init_error")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", type=click.IntRange(1, 64),
              help="worker processes (needs CITYCODE_REDIS_URL for more than 1)")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int | None, threads: int) -> None:
    """Serve the web app and API with gunicorn."""
    services = load_services()
    settings = services.settings
    if workers is None:
        workers = (2 * (os.cpu_count() or 1) + 1) if settings.redis_url else 1
    if workers > 1 and not settings.redis_url:
        fail("in-process state serves one process only; set CITYCODE_REDIS_URL to run several workers", "usage")
    services.db.dispose()  # each worker opens its own connections

    click.echo(f"citycode serving on http://{host}:{port}/  (data: {settings.home}, workers: {workers})", err=True)
    run_gunicorn(host, port, workers, threads)


for _domain in (identity_cli, certificates_cli, clients_cli, consent_cli, accesslog_cli, transit_cli, verify_cli):
    for _command in _domain.COMMANDS:
        main.add_command(_command)

if __name__ == "__main__":
    main()
