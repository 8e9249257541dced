//! Helpers for shadowai's end-to-end tests (network namespaces, servers, clients).
