"""The computations below the model: conv algorithms, PyTorch's BatchNorm, and `conv_bn`, the
one place that chooses among their fast paths. models.py reads like the paper; this reads like
a kernel library."""
