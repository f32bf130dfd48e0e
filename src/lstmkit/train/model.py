"""The model ``lstmkit train`` fits: an lstmkit.LSTM read out by one linear layer.

``(B, T, I) -> LSTM -> h_n of the last layer (both directions concatenated) -> (B, K)``,
``K`` = 1 (the next change, forecasting) or the number of classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..lstm import LSTM


class SequenceModel(nn.Module):
    """``lstm`` (batch-first) followed by ``head``, a linear layer on the final state.

    ``lstm_kwargs`` are :class:`lstmkit.LSTM`'s arguments (``num_layers``,
    ``bidirectional``, ...) and cell options (:data:`lstmkit.options.OPTIONS`).
    """

    def __init__(
        self, input_size: int, hidden_size: int, outputs: int, **lstm_kwargs: object
    ) -> None:
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size, batch_first=True, **lstm_kwargs)
        width = (self.lstm.proj_size or hidden_size) * (2 if self.lstm.bidirectional else 1)
        self.head = nn.Linear(width, outputs)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, I) -> (B, K)``."""
        _, (h_n, _) = self.lstm(x)  # (L*D, B, P)
        directions = 2 if self.lstm.bidirectional else 1
        last = torch.cat(list(h_n[-directions:]), dim=1)  # (B, D*P)
        return self.head(last)
