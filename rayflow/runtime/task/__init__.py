"""One spout or bolt instance, host-agnostic plain asyncio: the mailbox loop (``core``), barriers
and snapshots (``checkpoint``), event time (``eventtime``, ``timing``), the user object and its
executors (``user``, ``executors``), what it reports (``report``) and how it recovers
(``recovery``)."""
