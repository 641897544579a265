"""Threshold decryptors: separate processes, one key share each, that verify before they decrypt.

`core.Decryptor` holds the share and the checks (no gRPC); `service` serves it over gRPC (`fedgrad decryptor`);
`pool.DecryptorPool` is the coordinator's handle on all k of them.
"""
