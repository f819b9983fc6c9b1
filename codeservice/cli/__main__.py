"""``python -m codeservice.cli``: the same ``citycode`` command."""

from codeservice.cli.main import main

main()
