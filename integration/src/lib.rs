//! Real-world harness for ebpf-receiver: prerequisites ([`bootstrap`]), real servers
//! ([`mariadb`]), real clients ([`clients`]), the stock Collector ([`collector`]), the receiver
//! under test ([`receiver`]) and the load measurement shared by the e2e test and
//! `cargo xtask bench` ([`load`]). Every process it starts runs in its own process group and is
//! stopped when its guard drops ([`process`]).

pub mod bootstrap;
pub mod clients;
pub mod collector;
pub mod load;
pub mod mariadb;
pub mod paths;
pub mod process;
pub mod receiver;
