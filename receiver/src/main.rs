//! `ebpf-receiver`: the command line. Everything else lives in the library, read from `app.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ebpf_receiver::config::{Config, ConfigError};
use ebpf_receiver::{app, bpf};

/// Exit code for configuration errors (unknown keys, bad values, bad environment).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "ebpf-receiver",
    version,
    about = "eBPF socket tracing → OpenTelemetry spans over OTLP/gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// YAML configuration file; without it the documented defaults apply.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// OTLP/gRPC endpoint of the Collector (wins over the file and OTEL_EXPORTER_OTLP_*).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Where /metrics, /healthz and /readyz are served (wins over the file).
    #[arg(long, global = true)]
    metrics_address: Option<std::net::SocketAddr>,
    /// Log filter, e.g. `info` or `ebpf_receiver=debug` (RUST_LOG wins).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Diagnostic: record every captured event (payloads included, file mode 0600) for the
    /// replay benchmark. Env: `EBPF_RECEIVER_RECORD_EVENTS`.
    #[arg(long, value_name = "FILE", env = "EBPF_RECEIVER_RECORD_EVENTS")]
    record_events: Option<PathBuf>,
    /// Byte cap of `--record-events`; recording stops there.
    #[arg(long, default_value_t = ebpf_receiver::recording::DEFAULT_MAX_BYTES)]
    record_max_bytes: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the receiver (the default).
    Run,
    /// Check a configuration file and exit 0, or 2 with `file:line:column` and the field path.
    Validate,
    /// Report what this kernel and these privileges allow; exit non-zero naming what is missing.
    Check {
        /// Only print the tracepoints the probes attach to, one `category:name` per line, and
        /// exit 0 (e.g. to attach empty programs to the same tracepoints for comparison).
        #[arg(long)]
        list_tracepoints: bool,
    },
}

fn main() -> ExitCode {
    not_dumpable();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => match load(&cli.run) {
            Ok((_, path)) => {
                println!("{}: ok", path);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Check {
            list_tracepoints: true,
        } => {
            for tp in bpf::attach_points() {
                println!("{tp}");
            }
            ExitCode::SUCCESS
        }
        Command::Check {
            list_tracepoints: false,
        } => check(),
        Command::Run => {
            let (cfg, attrs) = match load(&cli.run) {
                Ok((loaded, _)) => loaded,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            init_logs(&cfg.telemetry.log_level);
            let diag = app::Diagnostics {
                record_events: cli.run.record_events.clone(),
                record_max_bytes: cli.run.record_max_bytes,
            };
            match run(cfg, attrs, diag) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

type Loaded = (Config, Vec<(String, String)>);

/// Defaults < file < environment < flags.
fn load(args: &RunArgs) -> Result<(Loaded, String), ConfigError> {
    let (mut cfg, shown) = match &args.config {
        Some(path) => (Config::load(path)?, path.display().to_string()),
        None => (Config::default(), "<defaults>".to_string()),
    };
    let attrs = cfg.apply_env(|k| std::env::var(k).ok())?;
    if let Some(e) = &args.endpoint {
        cfg.exporter.endpoint = e.clone();
    }
    if let Some(a) = args.metrics_address {
        cfg.telemetry.metrics_address = a;
    }
    if let Some(l) = &args.log_level {
        cfg.telemetry.log_level = l.clone();
    }
    // The file and the environment were valid on their own: what fails now came from a flag.
    cfg.validate().map_err(|(field, reason)| {
        let flag = match field.as_str() {
            "exporter.endpoint" => "--endpoint",
            "telemetry.metrics_address" => "--metrics-address",
            "telemetry.log_level" => "--log-level",
            _ => "a flag",
        };
        ConfigError::Flag {
            flag: flag.to_string(),
            field,
            reason,
        }
    })?;
    Ok(((cfg, attrs), shown))
}

fn run(cfg: Config, attrs: Vec<(String, String)>, diag: app::Diagnostics) -> anyhow::Result<()> {
    app::run_with(cfg, attrs, diag).context("ebpf-receiver stopped")
}

fn check() -> ExitCode {
    let items = bpf::check();
    let mut missing = Vec::new();
    for item in &items {
        println!(
            "{:<7} {:<28} {}",
            if item.ok { "ok" } else { "MISSING" },
            item.name,
            item.detail
        );
        if !item.ok {
            missing.push(item.name);
        }
    }
    if missing.is_empty() {
        println!("all requirements met");
        ExitCode::SUCCESS
    } else {
        eprintln!("missing: {}", missing.join(", "));
        ExitCode::FAILURE
    }
}

/// Makes the process non-dumpable before it reads anything: a core file (on a crash, with
/// `RLIMIT_CORE` raised or a `core_pattern` handler on the host) would hold every payload byte
/// captured so far, passwords and literals included, plus the exporter's headers; so would
/// `/proc/<pid>/mem` and ptrace for any process of the same user without `CAP_SYS_PTRACE`.
/// `PR_SET_DUMPABLE` 0 stops all three (issue 8, R8: `integration/tests/secrets_e2e.rs` aborts
/// the receiver with cores allowed and finds none). A process that gained capabilities through
/// file capabilities already starts non-dumpable; this makes root and `setpriv` runs the same.
fn not_dumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes this process's flag.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        eprintln!(
            "warning: cannot make the process non-dumpable: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
