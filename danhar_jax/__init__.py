"""DanHAR in JAX/Flax."""
