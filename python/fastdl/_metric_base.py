"""The base of fastdl's metric objects (fastdl.metrics)."""

import numpy as np

from ._checks import to_host


class Metric:
    """A metric accumulated over batches. `kind` tells the model what to feed it in fit:
    'classes' (true and predicted class ids) or 'values' (targets and outputs)."""

    kind = "classes"

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.name = name or self.default_name
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch; sample_weight: None or one weight per sample (a weighted mean, as Keras)."""
        w = None if sample_weight is None else to_host(sample_weight).astype(np.float64).reshape(-1)
        if self.kind == "classes":
            self._update(*self._classes(y_true, y_pred), w)
        else:
            self._update(to_host(y_true).astype(np.float64), to_host(y_pred).astype(np.float64), w)

    def _classes(self, y_true, y_pred):
        """(true, predicted) class ids for a 'classes' metric (its class defines how)."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.reset_state()
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name}
