//! Real-world harness for ebpf-receiver: prerequisites ([`bootstrap`]), real servers
//! ([`servers`]: MariaDB, PostgreSQL, Redis, nginx + an upstream, dnsmasq), real clients
//! ([`clients`]: one driver module per protocol), the stock Collector ([`collector`]), the
//! receiver under test ([`receiver`]), one e2e test's world ([`world`]: scratch dir, servers,
//! Collector, receiver, [`world::Checks`]), the MySQL load measurement of the e2e tests
//! ([`load`]), the benchmark behind `cargo xtask bench` ([`bench`]) and the soak behind
//! `cargo xtask soak` ([`soak`]). Every process it starts runs in its own process group and
//! is stopped when its guard drops ([`process`]).
//!
//! An e2e test file is `integration/tests/<proto>_e2e.rs`, declared in `integration/Cargo.toml`
//! with `required-features = ["e2e"]`; `cargo xtask test` finds and runs every such file.

pub mod bench;
pub mod bootstrap;
pub mod canary;
pub mod clients;
pub mod collector;
pub mod figures;
pub mod fuzz;
pub mod load;
pub mod paths;
pub mod process;
pub mod receiver;
pub mod replay;
pub mod servers;
pub mod soak;
pub mod span_metrics;
pub mod world;
