"""What people read: the live console, the run record, the end-of-run table, `pipeline summary`, the reference."""
