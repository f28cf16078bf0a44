"""ONNX Runtime adapter: the CPU default, and the reference every other backend is checked against."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import Engine, EngineError, EngineOptions, Outputs
from .loaders import Loader


class SessionFromOnnx(Loader[ort.InferenceSession]):
    """A CPU session of the model with this rank's thread share; nothing to cache (it loads in well under a
    second)."""

    def __init__(self, model: Path, threads: int = 0) -> None:
        self.model, self.threads = Path(model), threads

    def __call__(self) -> ort.InferenceSession:
        start = time.perf_counter()
        opts = ort.SessionOptions()
        if self.threads:
            # One rank's share of the node: no oversubscription between ranks on one node.
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        # Idle pool threads would spin between batches on the cores the decode threads need
        # (docs/dev/decisions/0011).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(self.model), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types per failure
            raise EngineError(f"ONNX Runtime cannot load {self.model}: {exc}") from None
        self.seconds = time.perf_counter() - start
        return session


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    @staticmethod
    def default_loader(model: Path, options: EngineOptions) -> SessionFromOnnx:
        return SessionFromOnnx(model, options.threads)

    def _activate(self) -> None:
        self.session = self.loader()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EngineError(f"{self.model}: expected one image input, found {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_shape = tuple(inputs[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.device_name = "cpu"

    def _infer(self, batch: np.ndarray) -> Outputs:
        outputs = self.session.run(self.output_names, {self.input_name: batch})
        return Outputs(zip(self.output_names, outputs))

    def _deactivate(self) -> None:
        del self.session
