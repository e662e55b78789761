"""Vigil's model server: ONNX model, validation, adaptive batching, transports, hot swap, producer.

`service.py` at the project root wires these parts into the BentoML service. Serving
imports only the shared base (`vigil`); never the monitor, lifecycle, converter,
loadtest, the CLI or the demo (tests/test_structure.py checks it).
"""
