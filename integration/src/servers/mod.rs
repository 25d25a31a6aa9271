//! Real servers, each a private instance in a scratch directory: its own data, config, port (a
//! free one, or a chosen loopback address), log file, and a [`ProcessGuard`] that stops it (and
//! everything it forked) on drop.
//!
//! | module | server | serving pid(s) |
//! |---|---|---|
//! | [`mariadb`] | `mariadbd` | [`MariaDb::pid`](mariadb::MariaDb::pid) (threads) |
//! | [`postgres`] | Debian `postgresql` (`initdb` + `postgres` as the `postgres` user) | the postmaster forks one backend per connection: [`Postgres::backends`](postgres::Postgres::backends), or psycopg's `backend_pid` |
//! | [`redis`] | `redis-server` | [`Redis::pid`](redis::Redis::pid) |
//! | [`nginx`] | `nginx` (`master_process off`: one process serves) in front of a Python upstream | [`Nginx::pid`](nginx::Nginx::pid), [`Nginx::upstream_pid`](nginx::Nginx::upstream_pid) |
//! | [`dnsmasq`] | `dnsmasq` (`dnsmasq-base`) on a loopback address, port 53 | [`Dnsmasq::pid`](dnsmasq::Dnsmasq::pid) for UDP; TCP queries are answered by a short-lived forked child |
//!
//! Every server implements [`Server`], which is what [`crate::world::World`] needs to report and
//! stop it; `()` is the empty server and tuples combine servers.
//!
//! [`ProcessGuard`]: crate::process::ProcessGuard

pub mod dnsmasq;
pub mod mariadb;
pub mod nginx;
pub mod postgres;
pub mod redis;

/// What [`crate::world::World`] needs from the server(s) of a test.
pub trait Server {
    /// A short label for messages, e.g. `postgres 127.0.0.1:41234`.
    fn label(&self) -> String;
    /// The pids currently serving requests (for failure messages and leak checks).
    fn pids(&self) -> Vec<u32>;
    /// The last lines of the server's log(s).
    fn log_tail(&self, lines: usize) -> String;
    /// Stops the server now (also done on drop); idempotent.
    fn stop(&mut self);
}

impl Server for () {
    fn label(&self) -> String {
        "no server".to_string()
    }
    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }
    fn log_tail(&self, _lines: usize) -> String {
        String::new()
    }
    fn stop(&mut self) {}
}

impl<S: Server> Server for Option<S> {
    fn label(&self) -> String {
        self.as_ref()
            .map_or_else(|| "no server".to_string(), S::label)
    }
    fn pids(&self) -> Vec<u32> {
        self.as_ref().map(S::pids).unwrap_or_default()
    }
    fn log_tail(&self, lines: usize) -> String {
        self.as_ref().map(|s| s.log_tail(lines)).unwrap_or_default()
    }
    fn stop(&mut self) {
        if let Some(s) = self {
            s.stop();
        }
    }
}

impl<S: Server> Server for Vec<S> {
    fn label(&self) -> String {
        self.iter().map(S::label).collect::<Vec<_>>().join(" + ")
    }
    fn pids(&self) -> Vec<u32> {
        self.iter().flat_map(S::pids).collect()
    }
    fn log_tail(&self, lines: usize) -> String {
        self.iter()
            .map(|s| format!("--- {}\n{}", s.label(), s.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn stop(&mut self) {
        for s in self.iter_mut().rev() {
            s.stop();
        }
    }
}

macro_rules! tuple_server {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Server),+> Server for ($($t,)+) {
            fn label(&self) -> String {
                [$(self.$i.label()),+].join(" + ")
            }
            fn pids(&self) -> Vec<u32> {
                let mut v = Vec::new();
                $(v.extend(self.$i.pids());)+
                v
            }
            fn log_tail(&self, lines: usize) -> String {
                [$(format!("--- {}\n{}", self.$i.label(), self.$i.log_tail(lines))),+].join("\n")
            }
            fn stop(&mut self) {
                $(self.$i.stop();)+
            }
        }
    };
}

tuple_server!(A 0, B 1);
tuple_server!(A 0, B 1, C 2);
tuple_server!(A 0, B 1, C 2, D 3);
