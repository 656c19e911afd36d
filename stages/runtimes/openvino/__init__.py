"""OpenVINO: reading and saving IR, and the compiled model as a runner."""
