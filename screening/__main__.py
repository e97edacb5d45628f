"""`python -m screening` is the `screen` command."""

from .cli import main

main()
