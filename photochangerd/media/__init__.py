"""Media: image sniffing/validation, the on-disk file store, the cleaner."""
