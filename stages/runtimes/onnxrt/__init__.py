"""ONNX Runtime: the FP32 reference and ONNX candidates as runners."""
