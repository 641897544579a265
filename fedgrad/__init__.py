"""fedgrad: a small autograd engine (numpy/cupy) and a federated-learning platform built on it."""
