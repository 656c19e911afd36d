"""The Ray cluster backend: the driver's side (tasks, progress) and what runs on a node."""
