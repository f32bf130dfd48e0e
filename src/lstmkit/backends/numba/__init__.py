"""The ``compiled`` engine's numba code (the backend's entry is :mod:`..compiled`).

Files:

* :mod:`.engine`: ``NumbaEngine``, rows split across threads, ``run_recurrence``, ``route``.
* :mod:`.team`: a call's row ranges run at once on torch's own OpenMP threads.
* :mod:`.loops`: the two time loops, each one compiled call with the products inside.
* :mod:`.layer`: a whole layer-direction without autograd, the input projection inside
  (or on a second thread, a block of steps ahead of the loop).
* :mod:`.units`: a layer without autograd split by hidden units across threads.
* :mod:`.sync`: a progress counter shared by two threads (LLVM IR atomics).
* :mod:`.rows`: the cell for one batch row, forward and backward, and layer-norm rows.
* :mod:`.numerics`: activation codes, tanh and sigmoid, activations, slopes and clips.
* :mod:`.blas`: the matrix products the loops call, with weights prepared once.
* :mod:`.routes`: the time loops' product routes, each timed in its loop.
* :mod:`.panels`: our register-blocked float32 block and row kernels (LLVM IR for the host CPU).
* :mod:`.dots`: register-blocked dot-product blocks over torch's weight layout (LLVM IR).
* :mod:`.step`: one step of every layer in one call, for ``LSTM.step`` and ``LSTMCell``
  without autograd.

Only :mod:`.engine` imports without numba (it then reports the engine unavailable).

numba's on-disk cache is checked against the source file of each cached function only,
not against the files whose functions it inlines or calls: after an edit to
:mod:`.loops` alone, :mod:`.layer`'s cached kernel would still call the old code (or a
symbol that no longer exists). So the cache files next to these sources (numba's default
place) are dropped whenever any of them, or the constants they read from
:mod:`lstmkit.cell`, change (:func:`_drop_stale_cache`). A cache kept elsewhere
(``NUMBA_CACHE_DIR``) is not watched; an installed release rewrites every source file,
which invalidates it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_cache(here: Path = Path(__file__).parent) -> None:
    """Delete the numba cache files of the package in ``here`` when its sources differ
    from those the cache was built from (a digest of every source file, kept beside the
    cache)."""
    cache = here / "__pycache__"
    try:
        files = [*sorted(here.glob("*.py")), here.parent.parent / "cell.py"]  # (LN_EPS)
        sources = b"".join(p.read_bytes() for p in files if p.exists())
        digest = hashlib.sha256(sources).hexdigest()
        stamp = cache / "lstmkit-sources.sha256"
        if stamp.exists() and stamp.read_text() == digest:
            return
        for stale in (*cache.glob("*.nbi"), *cache.glob("*.nbc")):
            stale.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba keeps its cache elsewhere, rebuilt on update
        pass


_drop_stale_cache()
