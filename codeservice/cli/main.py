"""The ``citycode`` command. JSON on standard output; exit 0 success or all accepted,
1 a code refused, 2 a usage or input error (message on standard error).

The entry point holds ``init`` and ``serve``; each domain's commands come from its own ``cli`` module,
loaded when one of them runs."""

from __future__ import annotations

import importlib
import os

import click

from codeservice.cli.common import echo_json, fail, load_services

#: Every domain's command groups, by name, and the module whose ``COMMANDS`` holds them.
DOMAIN_COMMANDS: dict[str, str] = {
    **dict.fromkeys(("keys", "trust", "resident", "code"), "codeservice.identity.cli"),
    **dict.fromkeys(("dept", "cert-type", "cert", "status", "apikey"), "codeservice.certificates.cli"),
    "client": "codeservice.clients.cli",
    "office": "codeservice.consent.cli",
    "audit": "codeservice.accesslog.cli",
    **dict.fromkeys(("operator", "transit", "ride", "gate", "clearing"), "codeservice.transit.cli"),
    "verify": "codeservice.cli.verify",
    "federation": "codeservice.federation.cli",
    "card": "codeservice.cards.cli",
    "helper": "codeservice.helpers.cli",
    **dict.fromkeys(("venue", "service"), "codeservice.venues.cli"),
}


class DomainGroup(click.Group):
    """``citycode``: its own commands, and each domain's, imported only when asked for (lazy: a gate's
    ``citycode gate run`` or an operator's ``citycode verify --batch`` starts in a fraction of the time
    without the web app and every other domain)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *DOMAIN_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = super().get_command(ctx, cmd_name)
        if own is not None or cmd_name not in DOMAIN_COMMANDS:
            return own
        module = importlib.import_module(DOMAIN_COMMANDS[cmd_name])
        return next(c for c in module.COMMANDS if c.name == cmd_name)


@click.group(cls=DomainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="citycode")
def main() -> None:
    """citycode: the city's one code. Settings come from CITYCODE_* environment variables."""


@main.command()
def init() -> None:
    """Create the data directory, database schema, keys and demo residents (idempotent)."""
    services = load_services(initialise=False)
    try:
        done = services.initialise()
        if services.settings.demo_data:  # figures for the data office's dashboard on scripts/serve
            # lazy: the demo's domains are loaded for 'init' only, as every domain's commands are
            from codeservice.demo import ensure_demo_figures
            from codeservice.identity.residents import list_residents

            with services.db.session() as session:
                ensure_demo_figures(session, list_residents(session)[:3], services.audit_key)
        echo_json(done)
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
    # lazy: the web app and every view are loaded for 'serve' only; the other commands start without them.
    from codeservice.wsgi import serve as run_gunicorn

    run_gunicorn(host, port, workers, threads)

if __name__ == "__main__":
    main()
