"""What crosses between tasks: channels with credits, the socket data plane (handshake, TLS),
routes per grouping with their batches, runs of marked rows, and the collector that emits into
them. Used by the task core and its hosts; knows nothing of user objects."""
