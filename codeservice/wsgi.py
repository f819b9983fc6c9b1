"""WSGI entry point (``gunicorn codeservice.wsgi:app``) and the gunicorn runner behind ``citycode serve``."""

from __future__ import annotations

from typing import Any

from flask import Flask

from codeservice.app import create_app

# Access log without query strings: sign-in callbacks carry one-time codes there.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


def serve(host: str, port: int, workers: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "accesslog": "-",
                "access_log_format": ACCESS_LOG_FORMAT,
                "timeout": 30,
                "graceful_timeout": 10,
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(initialise=False)

    _App().run()


def __getattr__(name: str) -> Flask:
    if name == "app":
        application = create_app(initialise=False)
        globals()["app"] = application
        return application
    raise AttributeError(name)
