"""Wire transport: generated protobuf/gRPC stubs (built from proto/fedgrad.proto) and tensor codecs."""
