"""The engine. At this level only the contract a stage kind or plugin imports (`stage`, `datakind`, `schema`,
`errors`, `status`, `faults`); the rest lives in folders by role, in the order data flows: `recipe/` -> `keys/`
-> `run/` -> `backends/`, `cache/`, `remote/`; `ops/` and `cli/` drive them and `report/` shows what happened.
`tests/test_imports.py` holds each folder to importing only the folders below it."""
