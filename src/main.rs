//! The `consul-dns-bridge` binary: parse options, start the bridge, run until SIGINT/SIGTERM,
//! on SIGHUP reload the zone files and the TLS certificate and reopen the query log. Logs go to stderr at `--log-level` (hickory-server only at
//! `error`: it logs queries at `info` and every malformed packet at `warn`), or as `RUST_LOG`
//! says.

use std::process::ExitCode;

use consul_dns_bridge::{Bridge, Config, LogFormat, Parsed, probe_health};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// What `probe` asks when given no address: `--http-listen`'s default.
const DEFAULT_PROBE: &str = "127.0.0.1:8654";

fn main() -> ExitCode {
    // `consul-dns-bridge probe [ADDR]`: a health check for images without a shell.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|first| first == "probe") {
        let addr = args.next().map_or_else(
            || DEFAULT_PROBE.to_owned(),
            |addr| addr.to_string_lossy().into_owned(),
        );
        return match probe_health(&addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("consul-dns-bridge probe: {why}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::parse(std::env::args_os()) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Display(text)) => {
            let _ = text.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("consul-dns-bridge: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    raise_open_files_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("consul-dns-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(&config))
}

async fn run(config: &Config) -> ExitCode {
    let bridge = match Bridge::start(config).await {
        Ok(bridge) => bridge,
        Err(e) => {
            error!("{e}");
            eprintln!("consul-dns-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(listen = ?bridge.dns_addrs(), consul = ?config.consul_addrs.iter().map(|u| u.as_str()).collect::<Vec<_>>(), domain = %config.domain, "serving DNS");
    wait_for_stop(&bridge).await;
    info!("shutting down");
    bridge.shutdown().await;
    ExitCode::SUCCESS
}

/// Logs to stderr: text (coloured only on a terminal) or JSON lines; the level from `RUST_LOG`,
/// else `--log-level`, else info.
fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // hickory-server logs every malformed packet at warn: a flood would flood the log.
        EnvFilter::new(format!("hickory_server=error,{}", config.log_level))
    });
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Raises the soft limit on open files to the hard one, as Go programs do at start: each TCP
/// client holds a descriptor, and a default soft limit of 1024 would refuse connections long
/// before the hard limit an operator set.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed, which lives here.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
            && {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
            }
    };
    if raised {
        info!(open_files = limit.rlim_cur, "raised the open files limit");
    }
}

/// Waits for SIGTERM or SIGINT; reloads on each SIGHUP meanwhile.
async fn wait_for_stop(bridge: &Bridge) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => on_hangup(bridge).await,
        }
    }
}

/// SIGHUP: zone files read again, the query log reopened (log rotation).
async fn on_hangup(bridge: &Bridge) {
    match bridge.reload_zones().await {
        Ok(zones) => info!(zones, "SIGHUP: zone files reloaded"),
        Err(error) => error!(%error, "SIGHUP: zone files not reloaded; the previous ones stay"),
    }
    bridge.reopen_query_log();
    match bridge.reload_certificate() {
        Some(Ok(())) => info!("SIGHUP: TLS certificate reloaded"),
        Some(Err(error)) => {
            error!(%error, "SIGHUP: TLS certificate not reloaded; the previous one stays")
        }
        None => {}
    }
}
