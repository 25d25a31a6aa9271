//! `loadgen`: the benchmark's fixed-rate (open-loop) load generator for HTTP/1.1 and Redis, with
//! latency measured from each request's scheduled send time. See
//! [`integration::bench::loadgen`].
//!
//! `loadgen --proto http|redis --addr 127.0.0.1:PORT --rate R [--connections C]
//! [--duration-s D] [--path /static/small.txt]` prints one JSON summary line.

use std::process::ExitCode;

use integration::bench::loadgen::{LoadgenArgs, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match LoadgenArgs::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&parsed) {
        Ok(s) => match serde_json::to_string(&s) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
