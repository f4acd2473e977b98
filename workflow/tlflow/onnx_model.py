"""An exported ``model.onnx`` run on ONNX Runtime: no TensorFlow, no Keras.

The predictor (tlflow.predict) and the web page (tlflow.serve) load it through
this module only, so a machine with ``onnxruntime`` alone can classify images.
"""

from __future__ import annotations

import numpy as np

from .readers import damaged


class OnnxModel:
    """``model(images)``: float64 class probabilities of a (n, height, width, 3) batch of
    RGB pixels (0-255), as ``model.keras`` gives them."""

    def __init__(self, path, threads: int = 1):
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings name graph internals
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except (
            ort_errors.Fail,
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidGraph,
            ort_errors.NoSuchFile,
        ) as error:
            raise damaged(path, error) from None
        (self.input,) = self.session.get_inputs()

    def __call__(self, images) -> np.ndarray:
        batch = np.asarray(images, dtype=np.float32)
        # An empty list of output names: all of them (ONNX Runtime's API).
        return np.asarray(self.session.run([], {self.input.name: batch})[0], dtype=np.float64)
