"""The operations the command line offers, each a function that takes typed arguments and returns a typed
result (as DVC's `repo/<op>.py` under its thin `commands/`): open a project, its status, pull, push.
`pipeline run` is pipeline/run/executor.py's `Executor.run`; gc is pipeline/cache/gc.py and
pipeline/remote/gc.py; the summary is pipeline/report/markdown.py. Nothing here prints."""
