"""validate's machinery: the gate table and its verdicts, numerics, per-output figures, samples, timing, the report."""
