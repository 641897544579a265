"""Corpora, tokenizer, vocabulary, splits and partitions for federated spam classification.

Knows nothing about models or the network: it turns emails into int32 id matrices and float32
labels, split into a test set and one shard per client (`build_federated_dataset`).
"""
from fedgrad.data.corpus import HAM, SPAM, Email, label_counts
from fedgrad.data.federated import (
    FederatedDataset,
    Shard,
    build_federated_dataset,
    load_shard,
    load_test,
    load_vocab,
)
from fedgrad.data.loaders import DEFAULT_CORPUS, load_corpus
from fedgrad.data.partitioning import SCHEMES, partition
from fedgrad.data.split import train_test_split
from fedgrad.data.tokens import tokenize, unique_tokens
from fedgrad.data.vocabulary import PAD, UNK, Vocabulary, encode_padded

__all__ = [
    "DEFAULT_CORPUS",
    "HAM",
    "PAD",
    "SCHEMES",
    "SPAM",
    "UNK",
    "Email",
    "FederatedDataset",
    "Shard",
    "Vocabulary",
    "build_federated_dataset",
    "encode_padded",
    "label_counts",
    "load_corpus",
    "load_shard",
    "load_test",
    "load_vocab",
    "partition",
    "tokenize",
    "train_test_split",
    "unique_tokens",
]
