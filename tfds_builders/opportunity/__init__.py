"""OPPORTUNITY gestures, the challenge protocol as in DanHAR (see opportunity_dataset_builder.py)."""
