"""PAMAP2 Physical Activity Monitoring, windowed as in DanHAR (see pamap2_dataset_builder.py)."""
