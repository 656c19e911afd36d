"""Models from other frameworks (TensorFlow SavedModel, Keras, TFLite, PaddlePaddle), as convert.openvino and
convert.onnx read them: which format a path holds (`formats`), how its inputs meet the recipe's `model.tensors`
(`ports`), and each framework's own run of the model, the reference a conversion is checked against
(`tensorflow`, `paddle`). Light at import: the frameworks are imported inside the functions that use them."""
