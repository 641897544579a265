"""Neural-network building blocks on the fedgrad engine (PyTorch-style names)."""
from fedgrad.nn import functional
from fedgrad.nn.layers import Dropout, Embedding, EmbeddingBag, Linear, ReLU, Sigmoid, Tanh
from fedgrad.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from fedgrad.nn.module import Module, ModuleList, Parameter, Sequential, StateDictError
from fedgrad.nn.recurrent import LSTM, LSTMCell, RNNCell

__all__ = [
    "LSTM",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "EmbeddingBag",
    "LSTMCell",
    "Linear",
    "MSELoss",
    "Module",
    "ModuleList",
    "Parameter",
    "RNNCell",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "StateDictError",
    "Tanh",
    "functional",
]
