"""At-least-once (Storm's acking): the XOR tree protocol and its tracker, the acker bolt, and the
binding of anchored emits, acks and fails onto a task's user object."""
