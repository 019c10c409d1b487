"""Two-phase-commit sinks (Flink's ``TwoPhaseCommitSinkFunction``) for exactly-once output.

A subclass stages what it writes in a *transaction* and makes it visible only once the checkpoint
that covers it is complete everywhere:

- ``begin(checkpoint_id)`` opens a transaction (``checkpoint_id``: the checkpoint it will belong
  to, or a later one) and returns it (any picklable description: a staged file's name, ...);
- ``write(transaction, tup)`` stages one tuple;
- ``pre_commit(transaction)`` makes it durable (flush, fsync) when a checkpoint's barrier
  passes; the transaction is then part of that checkpoint's snapshot;
- ``commit(transaction)`` makes it visible once the checkpoint is complete; it must be
  idempotent: after a crash it runs again for every transaction of the restored checkpoint;
- ``abort(transaction)`` throws a transaction away; ``abort_unknown(known)`` removes whatever a
  crashed predecessor staged that is not among ``known`` (called before the first ``begin``).

Under ``at_least_once`` and ``none`` there are no checkpoints: each tuple is written in a
transaction that commits at once (a subclass may do better, as ``FileSink`` does).

>>> class Collect(TwoPhaseCommitBolt):
...     committed = []
...     def begin(self, checkpoint_id): return []
...     def write(self, transaction, tup): transaction.append(tup)
...     def commit(self, transaction): Collect.committed.extend(transaction)
"""

from __future__ import annotations

from typing import Any

from rayflow.api.components import Bolt
from rayflow.api.tuple import Tuple
from rayflow.spec.settings import Reliability

FINAL = -1  # the final checkpoint of a bounded run (rayflow.runtime.task.snapshots.FINAL)


class TwoPhaseCommitBolt(Bolt):
    """A sink whose output appears exactly once (see the module docstring)."""

    # ------------------------------------------------------------ the user's side
    def begin(self, checkpoint_id: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define begin(checkpoint_id)")

    def write(self, transaction: Any, tup: Tuple) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define write(transaction, tup)")

    def pre_commit(self, transaction: Any) -> None:
        """Make the staged output durable (it is then part of a checkpoint)."""

    def commit(self, transaction: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define commit(transaction)")

    def abort(self, transaction: Any) -> None:
        """Throw the staged output away."""

    def abort_unknown(self, known: list[Any]) -> None:
        """Remove what a crashed predecessor staged that is not in ``known``."""

    # ------------------------------------------------------------ the runtime's side
    @property
    def transactional(self) -> bool:
        """True under exactly-once: output waits for its checkpoint."""
        context = self.__dict__.get("context")
        return context is None or context.reliability == Reliability.EXACTLY_ONCE

    def _txn_state(self) -> dict[str, Any]:
        state = self.__dict__.get("_rayflow_2pc")
        if state is None:
            state = self.__dict__["_rayflow_2pc"] = {
                "open": None,  # the transaction being written
                "pending": [],  # (checkpoint id, transaction): pre-committed, not committed
                "next": 1,  # the checkpoint the next transaction belongs to
                "started": False,  # abort_unknown has run
            }
        return state

    def process(self, tup: Tuple) -> None:
        state = self._txn_state()
        if state["open"] is None:
            if not state["started"]:
                state["started"] = True
                self.abort_unknown([txn for _id, txn in state["pending"]])
            state["open"] = self.begin(state["next"])
        self.write(state["open"], tup)
        if not self.transactional:
            self.pre_commit(state["open"])
            self.commit(state["open"])
            state["open"] = None

    def cleanup(self) -> None:
        """Without checkpoints, nothing waits; under exactly-once the final checkpoint commits."""

    def _snapshot_for(self, checkpoint_id: int) -> Any:
        state = self._txn_state()
        if state["open"] is not None:
            self.pre_commit(state["open"])
            state["pending"].append((checkpoint_id, state["open"]))
            state["open"] = None
        state["next"] = checkpoint_id + 1 if checkpoint_id != FINAL else state["next"]
        return {"pending": list(state["pending"]), "user": self.snapshot()}

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        state = self._txn_state()
        done = [
            (cid, txn)
            for cid, txn in state["pending"]
            if checkpoint_id == FINAL or (cid != FINAL and cid <= checkpoint_id)
        ]
        for cid, txn in done:
            self.commit(txn)
            state["pending"].remove((cid, txn))

    def _restore_for(self, snapshot: Any) -> None:
        self._recommit(snapshot["pending"])
        self.restore(snapshot["user"])

    def _restore_rescaled_for(self, snapshots: list[Any]) -> None:
        self._recommit([p for s in snapshots for p in s["pending"]])
        self.restore_rescaled([s["user"] for s in snapshots])

    def _recommit(self, pending: list[tuple[int, Any]]) -> None:
        """The restored checkpoint is complete, so its pre-committed transactions commit
        (again, if they already had: ``commit`` is idempotent)."""
        state = self._txn_state()
        for _cid, txn in pending:
            self.commit(txn)
        state["pending"] = []
        state["next"] = max([cid for cid, _ in pending if cid != FINAL], default=0) + 1
