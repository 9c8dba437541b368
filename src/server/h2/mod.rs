//! HTTP/2 (RFC 9113); for now only its header compression, HPACK.

pub mod hpack;
