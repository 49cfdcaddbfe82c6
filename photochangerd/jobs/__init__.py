"""The job pipeline: submit → queue → worker → provider → store → finalize → wake the waiter."""
