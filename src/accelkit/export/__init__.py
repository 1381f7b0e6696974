"""Export to ONNX and run in ONNX Runtime (fp32, dynamic int8, calibrated static int8).

Imports of onnx/onnxruntime happen inside the functions, so importing this package is cheap.
"""

from accelkit.export.onnx import (
    OnnxExportConfig,
    OnnxExportError,
    OrtConfig,
    OrtModule,
    export_onnx,
    ort_session_module,
    quantize_onnx_dynamic,
    quantize_onnx_static,
)

__all__ = [
    "OnnxExportConfig",
    "OnnxExportError",
    "OrtConfig",
    "OrtModule",
    "export_onnx",
    "ort_session_module",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
]
