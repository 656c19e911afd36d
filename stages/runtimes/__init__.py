"""The inference runtimes, one folder each (as Polygraphy's backend/<runtime>): I/O, builders, runners, probes;
at this level, what they share: the runner protocol, runner_for, timing, the dtype table, engine.json, the CPU."""
