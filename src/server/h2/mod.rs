//! HTTP/2 (RFC 9113): so far only the frame codec.
pub mod frame;
