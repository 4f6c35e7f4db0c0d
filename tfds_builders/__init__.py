"""TFDS builders for the DanHAR datasets."""
