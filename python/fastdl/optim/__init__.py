"""fastdl.optim: SGD, Adam and AdamW over lists of NumPy arrays, updated in place by one
multi-tensor kernel call per step. Update rules are torch.optim's."""

from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
