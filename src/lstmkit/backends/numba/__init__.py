"""The ``compiled`` engine's numba code (the backend's entry is :mod:`..compiled`).

Files:

* :mod:`.engine`: ``NumbaEngine``, rows split across threads, ``run_recurrence``, ``route``.
* :mod:`.loops`: the two time loops, each one compiled call with the products inside.
* :mod:`.rows`: the cell for one batch row, forward and backward, and layer-norm rows.
* :mod:`.numerics`: activation codes, tanh and sigmoid, activations, slopes and clips.
* :mod:`.blas`: the matrix products the loops call, with weights prepared once.
* :mod:`.panels`: our register-blocked float32 block kernel (LLVM IR for the host CPU).
* :mod:`.step`: one step of one layer in one call, for ``LSTM.step`` without autograd.

Only :mod:`.engine` imports without numba (it then reports the engine unavailable).
"""
