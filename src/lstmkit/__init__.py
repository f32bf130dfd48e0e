"""lstmkit: the LSTM layer, implemented in the open.

``lstmkit.LSTM`` and ``lstmkit.LSTMCell`` are drop-ins for PyTorch's ``nn.LSTM`` and
``nn.LSTMCell`` (same arguments, parameter names, outputs, gradients and errors),
computed by lstmkit's own code: one cell function (:mod:`lstmkit.cell`), one recurrence
(:mod:`lstmkit.backends`), layers and directions around it (:mod:`lstmkit.functional`).
"""

from .cell import cell_step
from .functional import LayerWeights, States
from .lstm import LSTM
from .lstm_cell import LSTMCell

__all__ = ["LSTM", "LSTMCell", "LayerWeights", "States", "cell_step"]
__version__ = "0.1.0"
