"""Using a trained checkpoint: batch scoring on Ray Data (``score``), an HTTP endpoint on Ray Serve
(``serve``) and ONNX export (``export``).

Every path scores an image exactly as ``swiniqa predict`` does (same decoding, same content-seeded
crops, same per-image mean; see :mod:`swiniqa.serving.runtime`). Importing this package is cheap: torch,
Ray and onnxruntime are imported by the modules that need them.
"""
