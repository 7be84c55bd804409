#!/usr/bin/env python
"""Django's command-line entry point."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from config.logging import LOGGED_COMMANDS, run_command_logged

    if len(sys.argv) > 1 and sys.argv[1] in LOGGED_COMMANDS and "--help" not in sys.argv[2:]:
        run_command_logged(sys.argv)
        return
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
