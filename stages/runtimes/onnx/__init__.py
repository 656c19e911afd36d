"""ONNX files: load, save and run, agreement checks for transformed models, Q/DQ graph edits."""
