"""Stage keys: what a stage's result depends on (parameters, inputs, code closure, toolchain, files read by path)."""
