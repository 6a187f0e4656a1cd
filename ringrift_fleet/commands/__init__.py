"""One module per ``ringrift-fleet`` subcommand; each exposes ``register(subparsers)``."""
