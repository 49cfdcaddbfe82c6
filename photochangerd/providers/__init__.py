"""AI providers behind one interface.  A provider knows HTTP and its vendor's JSON, nothing
about slots tables, jobs or Quart; it runs inside the job's cancel scope (the deadline)."""
