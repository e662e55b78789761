"""Live hot swap: follow a registry alias (polling, MLflow webhooks) and install new versions."""
