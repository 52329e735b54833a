//! `kalamdb-server`: reads the configuration, opens the engine and serves
//! HTTP until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kalamdb_engine::{Engine, EngineConfig};
use kalamdb_http::token::TokenIssuer;
use kalamdb_http::{AppState, Config, HttpOptions};
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::web::{LocalAddr, RemoteAddr};

#[derive(Debug, Parser)]
#[command(name = "kalamdb-server", version, about = "KalamDB SQL server")]
struct Args {
    /// TOML configuration file; KALAMDB_* environment variables override it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_openapi {
        println!("{}", kalamdb_http::openapi_json());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kalamdb-server: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Statements recurse over their syntax trees: worker threads get a stack
    // sized for the deepest statement the limits let through.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(kalamdb_engine::worker_stack_bytes(
            config.max_expression_depth,
        ))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kalamdb-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("kalamdb-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let mut engine_config = EngineConfig::new(config.data_dir.clone());
    engine_config.root_password = config.root_password.clone();
    engine_config.backup_dir = config.backup_dir.clone();
    engine_config.fast_path = config.fast_path;
    engine_config.cold.default_flush_rows = config.flush_rows;
    engine_config.cold.default_flush_interval_secs = config.flush_interval_secs;
    engine_config.cold.compact_min_files = config.compact_min_files;
    engine_config.jobs.retention_secs = config.job_retention_secs;
    engine_config.jobs.cleanup_interval_secs = config.cleanup_interval_secs;
    engine_config.limits = config.limits();
    let (engine, bootstrap) = Engine::open(engine_config).map_err(|e| {
        format!(
            "cannot open data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    if let (Some(password), Some(file)) = (
        &bootstrap.generated_root_password,
        &bootstrap.root_password_file,
    ) {
        tracing::warn!(
            "created user root with generated password {password} (also written to {})",
            file.display()
        );
    }
    engine
        .start_jobs()
        .map_err(|e| format!("cannot start background jobs: {e}"))?;
    let secret = engine
        .jwt_secret(config.jwt_secret.as_deref())
        .map_err(|e| format!("cannot load the token secret: {e}"))?;
    let state = Arc::new(AppState {
        engine: engine.clone(),
        tokens: TokenIssuer::new(&secret, config.token_ttl_secs),
    });
    let pg_state = state.clone();
    let app = kalamdb_http::app(
        state,
        &HttpOptions {
            cors_origins: config.cors_origins.clone(),
            max_request_bytes: config.max_request_bytes,
            ws: kalamdb_http::ws::WsLimits {
                max_subscriptions: config.ws_max_subscriptions,
                queue_capacity: config.ws_queue_capacity,
                // As large as an HTTP body may be (a long subscribe then gets
                // a LIMIT_EXCEEDED error, not a dropped connection), and
                // always room for the longest subscribe SQL.
                max_message_bytes: config
                    .max_request_bytes
                    .max(config.max_subscribe_sql_bytes + 64 * 1024),
            },
            metrics_access: config.metrics_access,
        },
    );

    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let pg_listener = bind_pg(&config).await?;
    let acceptor = NoDelay(
        TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
    );
    let bound = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .ok_or("the listener has no socket address")?;
    // One machine-readable line on stdout, and the same in the log.
    println!("listening on http://{bound}");
    tracing::info!("listening on http://{bound}");
    let pg = match pg_listener {
        Some(listener) => Some(start_pg(listener, &config, pg_state)?),
        None => None,
    };

    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(Duration::from_secs(10)))
        .await
        .map_err(|e| format!("server error: {e}"))?;
    if let Some(pg) = pg {
        pg.abort();
    }
    // Queued jobs stay queued in system.jobs and resume at the next start;
    // STREAM events still within retention are flushed to disk.
    if let Err(e) = engine.shutdown().await {
        tracing::warn!("shutdown: {e}");
    }
    tracing::info!("shut down");
    drop(engine);
    Ok(())
}

/// Binds the Postgres wire listener unless it is `off`. A default address
/// that is taken (another server on this machine) is logged and skipped; an
/// address given explicitly that cannot be bound stops the server.
async fn bind_pg(config: &Config) -> Result<Option<tokio::net::TcpListener>, String> {
    let Some((addr, explicit)) = config.pg_listen_addr().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if !explicit => {
            tracing::warn!(
                "postgres listener not started: cannot listen on {addr}: {e} (set KALAMDB_PG_LISTEN to another address, or off)"
            );
            Ok(None)
        }
        Err(e) => Err(format!("cannot listen on {addr} (KALAMDB_PG_LISTEN): {e}")),
    }
}

/// Serves the Postgres wire protocol on a bound listener.
fn start_pg(
    listener: tokio::net::TcpListener,
    config: &Config,
    state: Arc<AppState>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let bound = listener
        .local_addr()
        .map_err(|e| format!("the postgres listener has no address: {e}"))?;
    println!("postgres listening on {bound}");
    tracing::info!("postgres listening on {bound}");
    let options = kalamdb_http::pg::PgOptions {
        max_message_bytes: config.max_request_bytes,
    };
    Ok(tokio::spawn(kalamdb_http::pg::serve(
        listener, state, options,
    )))
}

/// Accepts TCP connections with Nagle's algorithm off. A WebSocket writes
/// small messages back to back (`subscribed` then `initial_data`, change
/// after change); with Nagle on, each one after the first waits for the
/// client's delayed ACK, about 40 ms on Linux.
struct NoDelay(TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        Ok((io, local, remote, scheme))
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
