"""Pure domain code: no I/O, no Trio, no database."""
