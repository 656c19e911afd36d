"""OpenVINO Model Server repositories: config.json written from members, and checked as OVMS would read it.

`config` makes the entries (served names, shapes in OVMS's syntax, plugin config) and parses OVMS's shape
syntax; `schema` validates config.json against OVMS's own JSON schema, kept beside it; `repository` checks a
repository (the package planned, the one written, or one written by hand) the way OVMS resolves it: names,
base paths, version folders, the model files in each, and shapes against those files.
"""
