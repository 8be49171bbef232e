"""Command-line layer of dpedkit (installed as ``dpedkit_cli``): click + rich over the library."""
