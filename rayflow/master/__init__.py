"""The job master ("nimbus"): runs topologies on a Ray cluster for as long as they should run,
supervises and restarts their tasks, and shows them (REST API, metrics, web UI)."""
