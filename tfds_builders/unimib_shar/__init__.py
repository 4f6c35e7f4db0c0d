"""UniMiB SHAR AF-17 windows, as in DanHAR (see unimib_shar_dataset_builder.py)."""
