"""The Textual chat TUI (`ikv tui`, `ikv chat --tui`): the same memory loop as `ikv chat`."""
