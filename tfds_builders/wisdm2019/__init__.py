"""WISDM-2019 smartwatch builder (`tfds.builder("wisdm2019")` once imported)."""
