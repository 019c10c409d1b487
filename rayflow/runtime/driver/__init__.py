"""The driver's side of a run: the deployment (place, wire, watch, restart), the checkpoint
coordinator, the restart strategy and counters carried over restarts."""
