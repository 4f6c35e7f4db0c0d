"""OPPORTUNITY gestures, challenge protocol as in DanHAR (opportunity_dataset_builder.py)."""
