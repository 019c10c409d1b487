"""The engine room, by side and feature: ``io`` (what crosses between tasks), ``task`` (one
spout or bolt instance), ``acking`` (at-least-once), ``hosts`` (a Ray actor, or one process) and
``driver`` (the deployment, checkpoint coordination, restarts). Dependencies point one way:
driver -> hosts -> task -> acking, io."""
