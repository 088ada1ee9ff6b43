"""The `sidflow` command line: one module per family of commands, `main.py` assembles them."""
