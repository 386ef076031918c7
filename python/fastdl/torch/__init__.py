"""fastdl for PyTorch users.

    from fastdl.torch import AdamW                      # instead of: from torch.optim import AdamW
    from fastdl.torch.nn import functional as FF        # FF.cross_entropy: value and gradient in one pass

- ``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``, ``Adadelta``, ``Adamax``, ``NAdam``: drop-in
  ``torch.optim`` optimizers, one fused multi-tensor step
  (CPU tensors through the C++ module, CUDA tensors through the CUDA module); see .optimizers.
- ``nn.functional.cross_entropy`` / ``nn.CrossEntropyLoss``: torch's cross-entropy with the loss
  and its gradient computed in one fused pass; see .nn.
"""

from . import nn
from .optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, RMSprop

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "nn"]
