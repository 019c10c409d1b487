"""Where task cores run: one per Ray actor (``actor``), or many in one process (``local``, for
:mod:`rayflow.testing` and the final run of a bounded topology without Ray)."""
