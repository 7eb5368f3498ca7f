"""The Textual chat TUI (to come): a thin shell over `ikv_local`, like the CLI."""
