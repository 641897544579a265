"""Tensor codec and chunking: exact round trips, and refusal of payloads that do not match their manifest."""
import numpy as np
import pytest

from fedgrad.protocol import DType, TensorSpec
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import (
    MAX_CHUNK_BYTES,
    PayloadBuffer,
    WireError,
    decode_tensors,
    encode_tensors,
    payload_size,
    split_payload,
)


def test_round_trip_preserves_names_order_shapes_dtypes_and_values():
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {
        "embedding.weight": rng.standard_normal((7, 3)).astype(np.float32),
        "bias": np.array([1.5], dtype=np.float32),
        "scalar": np.array(2.0, dtype=np.float64),
        "counts": np.arange(5, dtype=np.int32),
        "big_ids": np.array([2**40, -3], dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    specs, payload = encode_tensors(tensors)
    assert [(spec.name, spec.shape, str(spec.dtype)) for spec in specs] == [
        ("embedding.weight", (7, 3), "float32"), ("bias", (1,), "float32"), ("scalar", (), "float64"),
        ("counts", (5,), "int32"), ("big_ids", (2,), "int64"), ("empty", (0, 4), "float32")]
    assert len(payload) == payload_size(specs) == 7 * 3 * 4 + 4 + 8 + 5 * 4 + 2 * 8
    decoded = decode_tensors(specs, payload)
    assert list(decoded) == list(tensors)
    for name, array in tensors.items():
        assert decoded[name].dtype == array.dtype and decoded[name].shape == array.shape
        np.testing.assert_array_equal(decoded[name], array)


def test_non_contiguous_and_big_endian_inputs_are_sent_as_little_endian_c_order():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensors = {"transposed": base.T, "big_endian": base.astype(">f4")}
    specs, payload = encode_tensors(tensors)
    decoded = decode_tensors(specs, payload)
    np.testing.assert_array_equal(decoded["transposed"], base.T)
    np.testing.assert_array_equal(decoded["big_endian"], base)
    assert specs[1].dtype == DType.FLOAT32


def test_tensor_over_4_mib_travels_in_chunks_of_at_most_1_mib():
    big = np.random.default_rng(1).standard_normal((1200, 1000)).astype(np.float32)  # 4.58 MiB
    specs, payload = encode_tensors({"w": big})
    chunks = list(split_payload(payload))
    assert len(payload) > 4 * 2**20
    assert len(chunks) == 5 and all(0 < len(chunk) <= MAX_CHUNK_BYTES for chunk in chunks)
    assert all(len(pb.TaskChunk(data=chunk).SerializeToString()) < 4 * 2**20 for chunk in chunks)
    buffer = PayloadBuffer(payload_size(specs))
    for chunk in chunks:
        buffer.append(chunk)
    np.testing.assert_array_equal(decode_tensors(specs, buffer.payload())["w"], big)


def test_empty_payload_has_no_chunks():
    assert list(split_payload(b"")) == []
    assert PayloadBuffer(0).payload() == bytearray()


def test_buffer_refuses_overflow_truncation_and_oversized_chunks():
    buffer = PayloadBuffer(10)
    buffer.append(b"x" * 6)
    with pytest.raises(WireError, match="more than the announced 10"):
        buffer.append(b"y" * 5)
    with pytest.raises(WireError, match="ended after 6 of the announced 10"):
        buffer.payload()
    with pytest.raises(WireError, match="chunk limit"):
        PayloadBuffer(2 * MAX_CHUNK_BYTES).append(b"z" * (MAX_CHUNK_BYTES + 1))


def test_decode_refuses_payloads_that_do_not_match_the_manifest():
    specs, payload = encode_tensors({"a": np.ones(3, dtype=np.float32)})
    with pytest.raises(WireError, match="payload has 8 bytes, the manifest describes 12"):
        decode_tensors(specs, payload[:8])
    twice = [specs[0], specs[0]]
    with pytest.raises(WireError, match="appears twice"):
        decode_tensors(twice, payload * 2)
    with pytest.raises(WireError, match="negative dimension"):
        payload_size([TensorSpec("a", (-1, 3), DType.FLOAT32)])


def test_unsupported_dtype_is_refused_on_encode():
    with pytest.raises(WireError, match="cannot be sent"):
        encode_tensors({"flags": np.zeros(2, dtype=np.bool_)})
