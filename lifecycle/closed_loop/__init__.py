"""The closed loop: serve the world's users through the serving code, let the world respond,
ingest the logs as the next day's data, retrain, gate and promote; and the A/B report."""
