"""vem.calibration: INT8 calibration sets from real runtime runs, Q/DQ graphs, the quality gate.

Imports the runtime and ONNX tooling, never torch.
"""
