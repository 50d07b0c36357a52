"""fieldserve serving side: ONNX model repository -> onnxruntime -> HTTP field predictions.

Never imports torch or `training` (tests/test_app_imports.py enforces it): a base install
without extras must be able to serve.
"""
