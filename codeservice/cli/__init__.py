"""The ``citycode`` command: the entry point in :mod:`codeservice.cli.main`, shared parts in
:mod:`codeservice.cli.common`, each domain's commands in that domain's ``cli`` module."""
