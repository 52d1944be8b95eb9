"""Production side: the ONNX bundle, the HTTP API, batch scoring, the night planner."""
