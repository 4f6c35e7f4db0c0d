"""WISDM v1.1 builder (`tfds.builder("wisdm")` once imported)."""
