"""The base of fastdl's metric objects (fastdl.metrics)."""

import numpy as np

from ._checks import to_host


class Metric:
    """A metric accumulated over batches. `kind` tells the model what to feed it in fit:
    'classes' (true and predicted class ids) or 'values' (targets and outputs)."""

    kind = "classes"
    # The names of the attributes reset_state sets, summable across processes (numbers, arrays, lists
    # of arrays, or None before the first update): what data-parallel training reduces. None: unknown.
    _state = None

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

    def _state_values(self):
        return {k: getattr(self, k) for k in self._state}

    def _merge_states(self, states):
        """Sets the state to the sum of `states` (_state_values of every process, this one's included)."""
        for k in self._state:
            values = [s[k] for s in states if s[k] is not None]
            setattr(self, k, _sum_states(values) if values else None)


def _sum_states(values):
    if isinstance(values[0], (list, tuple)):
        return [_sum_states([v[i] for v in values]) for i in range(len(values[0]))]
    ndim = max(np.ndim(v) for v in values)  # AUC(multi_label): a process that saw no batch keeps (T,)
    values = [v for v in values if np.ndim(v) == ndim]
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total
