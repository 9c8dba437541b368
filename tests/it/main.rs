//! The integration tests, compiled as one test binary (`cargo test --test it`), one module per
//! area, as ripgrep does: the kes library, its dependencies and [`support`] are linked once
//! instead of once per file, and a helper of [`support`] that no test uses is a dead-code
//! warning rather than hidden under `#![allow(dead_code)]`. Run one area with a filter
//! (`cargo test --test it api::`), one test by its full name (`cargo test --test it --
//! --exact ops::audit_records_are_bounded_in_size_and_rate`). Tests are named `area::test`, so
//! scripts/test.sh skips the `peer_*` ones by names such as `ops::peer_...`. Data the tests
//! read stays beside this directory: tests/vectors, tests/configs, tests/differential,
//! tests/h2.
//!
//! Three files stay binaries of their own: tests/hoarding.rs, tests/h2.rs and tests/faults.rs.
//! Their tests measure latency while the machine is loaded on purpose (a thousand hoarded
//! connections, HTTP/2 floods, a Vault that is sealed, slow or gone) and hold it to the bound
//! the server promises (100 ms for another client while a hoard is held, 250 ms for a bystander
//! during a flood, 2 s for an uncached key while Vault cannot answer). Cargo runs test binaries
//! one after another, so in a binary of their own they run only beside each other, under the
//! locks those files already have (hoarding: one at a time; h2: a test that measures runs
//! alone). Here the harness would run them beside any other test of the suite, on a 2-core
//! machine the other of the two cores, and a test that starts Go servers or OpenBao next to a
//! flood breaks a 100 ms bound that has nothing to do with the server. Keeping them out of this
//! binary by a lock instead (an exclusive guard for them, a shared one for every other test)
//! would need a guard in each of the ~140 tests here and in every test added later, and a
//! forgotten one would only show as a flaky timing test. They include [`support`] with
//! `#[path]` (allowing dead code, since they use a part of it); their own helpers are in
//! tests/timing/.

mod support;

mod api;
mod cli;
mod cli_compat;
mod compat;
mod config_corpus;
mod differential;
mod migrate;
mod ops;
mod packaging;
mod security;
mod service;
mod systemd;
mod vault_e2e;
mod vault_health;
mod vault_keystore;
mod versions;
