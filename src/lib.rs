//! # kes: a KES key server in Rust
//!
//! KES sits between MinIO (or any KES client) and a root KMS such as HashiCorp Vault. Clients
//! authenticate with TLS client certificates (mutual TLS); a policy says which API paths an identity
//! may call; master keys live in a keystore, and KES uses them to generate, encrypt and decrypt data
//! keys. This crate is wire-compatible with the Go server (minio/kes): same API, same error texts,
//! same configuration file, same stored key format, same ciphertexts.
//!
//! Goals, in order:
//! * **Never lose or expose a key.** Keys are created exclusively, never overwritten; key material is
//!   zeroized on drop and never appears in logs, errors or `Debug` output.
//! * **Compatibility.** A MinIO node cannot tell this server from the Go one.
//! * **Simple, blocking, few dependencies.** Event loops (mio, one per CPU) own the connections
//!   and answer what needs no keystore call; a bounded pool of worker threads, started on
//!   demand, makes the blocking keystore calls; explicit deadlines on every connection; rustls
//!   for TLS; no async runtime (docs/architecture.md).
//! * **No `unsafe`** outside [`sys`], which holds the few system calls (mlockall, core dumps,
//!   terminal echo, socket and resource limits), and [`alloc`], the counting global allocator.
//!
//! A request travels: [`server`] (accept, TLS, HTTP framing) → [`api`] (route table, policy check via
//! [`auth`], handler) → [`cache`] → [`keystore`], with [`crypto`] doing the key work.

#![deny(unsafe_code)]
// Module docs link to the private items that implement them: read with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod alloc;
pub mod api;
pub mod auth;
pub mod cache;
pub mod certs;

pub mod cli;
pub mod config;
pub mod crypto;
pub mod der;
pub mod gojson;
pub mod keyring;
pub mod keystore;
pub mod logstream;
pub mod metrics;
#[cfg(test)]
mod module_graph;
pub mod notify;
pub mod permissions;
#[cfg(test)]
mod protocol_citations;
pub mod server;
pub mod sys;
#[cfg(test)]
mod testing;
pub mod transport;
