"""vem.export: PyTorch VeM -> ONNX per component, fp16 graphs, TensorRT engines, the bundle."""
