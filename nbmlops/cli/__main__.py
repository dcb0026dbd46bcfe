"""``python -m nbmlops.cli``: what launchers (the scheduler, the server) run, with the same
interpreter as themselves."""

from . import main

main()
