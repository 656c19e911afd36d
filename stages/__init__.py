"""The stage kinds: the modules at this level, each an entry point. Their machinery sits in folders: `validation/`
(validate's gates, figures, timing, report), `runtimes/<runtime>/` (ONNX, ONNX Runtime, OpenVINO, TensorRT),
`quantization/` (calibration, the control metric), `data/` (the dataset kinds, entry points too) and `common/`."""
