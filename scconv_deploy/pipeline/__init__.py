"""The stages of ``export_onnx`` (``scconv_deploy.onnx_export``), one module each: options, network,
graph (torch → ONNX), data (check and calibration inputs), check (FP32), result (report)."""
