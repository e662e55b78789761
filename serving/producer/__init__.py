"""The monitor's producer: served batches -> per-worker agent process -> profiles + prediction log."""
