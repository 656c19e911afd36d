"""The command line: parse arguments, call one operation, print what it returned."""
