"""The production topology, live on one machine: PostgreSQL-backed MLflow, three replicas of
the exported bento, one monitor, Prometheus and Alertmanager (`make topology`)."""
