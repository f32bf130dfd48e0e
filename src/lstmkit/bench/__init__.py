"""``lstmkit bench``: lstmkit's backends against nn.LSTM, in one process, interleaved.

Modules: :mod:`.shapes` and :mod:`.catalog` (the names, light: ``--help`` reads them),
:mod:`.arguments` (the flags), :mod:`.impls` (the registry of implementations, all on
the same weights), :mod:`.timing` (interleaved rounds), :mod:`.runner` (one run over
shapes and modes), :mod:`.report` (table, JSON, the machine), :mod:`.command` (the
command: progress on stderr, the report on stdout).
"""
