"""Weakly labeled windows composed from WISDM-2019 or WISDM v1.1 (`tfds.builder("weakly")`)."""
