"""Helpers several kinds share: agreement metrics, output roles, calibration checks, the torch model, code references,
parameter groups."""
