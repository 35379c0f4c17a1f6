//! `domvia-calls serve`: the reference realtime server, configured from a TOML file, flags and
//! environment variables (flags win over the file). With nothing given it serves the development
//! app on 127.0.0.1:6001.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use domvia_calls::realtime::AppConfig;
use domvia_calls::server::{self, ServerConfig};
use domvia_calls::signing::Secret;

use super::CliResult;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (bind, apps, queue sizes).
    #[arg(long, env = "DOMVIA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on for WebSocket connections and the HTTP API.
    #[arg(long, env = "DOMVIA_BIND")]
    bind: Option<SocketAddr>,
    /// Serve one app with this id (needs --app-key and --app-secret); replaces the file's apps.
    #[arg(long, env = "DOMVIA_APP_ID", requires_all = ["app_key", "app_secret"])]
    app_id: Option<String>,
    #[arg(long, env = "DOMVIA_APP_KEY", requires = "app_id")]
    app_key: Option<String>,
    #[arg(
        long,
        env = "DOMVIA_APP_SECRET",
        hide_env_values = true,
        requires = "app_id"
    )]
    app_secret: Option<String>,
    /// Client events per second per connection, for every app.
    #[arg(long)]
    client_events_per_second: Option<u32>,
    /// Webhook URL, for every app.
    #[arg(long, env = "DOMVIA_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Frames queued per connection before it is closed as a slow consumer.
    #[arg(long)]
    outbound_queue: Option<usize>,
}

fn build_config(args: ServeArgs) -> Result<(ServerConfig, bool), String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            ServerConfig::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    if let (Some(id), Some(key), Some(secret)) = (args.app_id, args.app_key, args.app_secret) {
        let mut app = AppConfig::new(&id, &key, "");
        app.secret = Secret::new(secret);
        config.apps = vec![app];
    }
    let development = config.apps == vec![AppConfig::development()];
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    for app in &mut config.apps {
        if let Some(rate) = args.client_events_per_second {
            app.client_events_per_second = rate;
        }
        if let Some(url) = &args.webhook_url {
            app.webhook_url = Some(url.clone());
        }
    }
    if let Some(q) = args.outbound_queue {
        config.outbound_queue = q;
    }
    config.validate()?;
    Ok((config, development))
}

pub fn run(args: ServeArgs) -> CliResult {
    let (config, development) = build_config(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let running = server::start(config.clone())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
        let addr = running.addr();
        println!("domvia-calls realtime server listening on {addr}");
        for app in &config.apps {
            println!(
                "  app id {}  key {}  client events {}/s  websocket ws://{addr}/app/{}?protocol=7  http api http://{addr}/apps/{}/",
                app.id, app.key, app.client_events_per_second, app.key, app.id
            );
            if development {
                println!(
                    "  secret {} (development default; give your own with --config or --app-secret)",
                    app.secret.expose()
                );
            }
        }
        wait_for_signal().await;
        println!("shutting down: closing connections with 4200");
        running.shutdown().await;
        Ok(true)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
