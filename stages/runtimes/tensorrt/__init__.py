"""TensorRT: the build as plain data, the thin API layer, layers, the runner, the GPU probe and hardware targets."""
