"""Vigil's serving runtime: ONNX model, request validation, batching, HTTP routes, bento export.

`service.py` at the project root wires these parts into a BentoML service; nothing here
imports the monitor.
"""
