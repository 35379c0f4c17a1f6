//! `domvia-calls serve`: the reference realtime server and the reference trusted server, together
//! (default) or one role alone. Configured from a TOML file with `[realtime]` and `[trusted]`
//! sections, then flags and environment variables (flags win). With nothing given it serves the
//! development app on 127.0.0.1:6001 and the demo users on 127.0.0.1:8080.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use domvia_calls::realtime::AppConfig;
use domvia_calls::server::{self, ServerConfig};
use domvia_calls::signing::Secret;
use domvia_calls::stack::{self, StackConfig};
use domvia_calls::trusted::Directory;
use domvia_calls::trusted_server::{self, DEVELOPMENT_MASTER_KEY, TrustedConfig};
use serde::Deserialize;

use super::CliResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Realtime and trusted server in one process, wired to each other.
    Both,
    /// The realtime server alone (Pusher protocol 7 WebSocket and HTTP API).
    Realtime,
    /// The trusted server alone (auth endpoint, call records, webhooks in).
    Trusted,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which servers to run.
    #[arg(
        long,
        value_enum,
        default_value = "both",
        env = "DOMVIA_ROLE",
        hide_env_values = true
    )]
    role: Role,
    /// TOML configuration file with `[realtime]` and `[trusted]` sections.
    #[arg(long, env = "DOMVIA_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// Realtime server address (WebSocket and HTTP API); 127.0.0.1:6001 by default.
    #[arg(long, env = "DOMVIA_BIND", hide_env_values = true)]
    bind: Option<SocketAddr>,
    /// Another address of the same realtime server (repeatable): one hub, several listeners, as
    /// the nodes for the conformance kit's cluster cases.
    #[arg(long = "extra-bind")]
    extra_binds: Vec<SocketAddr>,
    /// Trusted server address; 127.0.0.1:8080 by default.
    #[arg(long, env = "DOMVIA_TRUSTED_BIND", hide_env_values = true)]
    trusted_bind: Option<SocketAddr>,
    /// Serve one app with this id (needs --app-key and --app-secret); replaces the file's apps.
    #[arg(long, env = "DOMVIA_APP_ID", requires_all = ["app_key", "app_secret"])]
    app_id: Option<String>,
    /// The app key clients connect with (`/app/{key}`).
    #[arg(
        long,
        visible_alias = "key",
        env = "DOMVIA_APP_KEY",
        requires = "app_id",
        hide_env_values = true
    )]
    app_key: Option<String>,
    /// The app secret that signs subscriptions, HTTP API requests and webhooks.
    #[arg(
        long,
        visible_alias = "secret",
        env = "DOMVIA_APP_SECRET",
        hide_env_values = true,
        requires = "app_id"
    )]
    app_secret: Option<String>,
    /// Client events per second per connection, for every app.
    #[arg(long)]
    client_events_per_second: Option<u32>,
    /// Webhook URL, for every app (in role `both`, the trusted server's by default).
    #[arg(long, env = "DOMVIA_WEBHOOK_URL", hide_env_values = true)]
    webhook_url: Option<String>,
    /// Frames queued per connection before it is closed as a slow consumer.
    #[arg(long)]
    outbound_queue: Option<usize>,
    /// PEM certificate chain: the realtime server speaks TLS (`wss://`, `https://`) with it.
    #[arg(
        long,
        env = "DOMVIA_TLS_CERT",
        requires = "tls_key",
        hide_env_values = true
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "DOMVIA_TLS_KEY",
        requires = "tls_cert",
        hide_env_values = true
    )]
    tls_key: Option<PathBuf>,
    /// Also trust the CA certificates of this PEM file for outbound TLS (webhooks, the realtime
    /// HTTP API behind a private CA).
    #[arg(long, env = "DOMVIA_CA_FILE", hide_env_values = true)]
    ca_file: Option<PathBuf>,
    /// `postgres://...` or `sqlite://...`; a SQLite file in --data-dir by default.
    #[arg(long, env = "DOMVIA_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Directory of the default SQLite database (`calls.db`); ./domvia-data by default, created if
    /// missing.
    #[arg(long, env = "DOMVIA_DATA_DIR", hide_env_values = true)]
    data_dir: Option<PathBuf>,
    /// Users, tokens and scopes (TOML); the demo users by default.
    #[arg(long, env = "DOMVIA_FIXTURE", hide_env_values = true)]
    fixture: Option<PathBuf>,
    /// Realtime HTTP API base URL for role `trusted`.
    #[arg(long, env = "DOMVIA_REALTIME_API_URL", hide_env_values = true)]
    realtime_api_url: Option<String>,
    /// The realtime server as browsers reach it (`http://host:port`), for the demo page.
    #[arg(long, env = "DOMVIA_PUBLIC_REALTIME_URL", hide_env_values = true)]
    public_realtime_url: Option<String>,
    /// pusher-js browser bundle (`pusher.min.js`) served to the demo page.
    #[arg(long, env = "DOMVIA_PUSHER_JS", hide_env_values = true)]
    pusher_js: Option<PathBuf>,
    /// Serve the development secrets (app secret, privacy master key, demo users and tokens) on
    /// an address other machines can reach. Without it, that is refused.
    #[arg(long)]
    allow_dev_secrets: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    #[serde(default)]
    realtime: Option<ServerConfig>,
    #[serde(default)]
    trusted: Option<TrustedConfig>,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn build(args: ServeArgs) -> Result<(Role, ServerConfig, TrustedConfig), String> {
    let file: ServeFile = match &args.config {
        Some(path) => {
            toml::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ServeFile::default(),
    };
    let mut realtime = file.realtime.unwrap_or_default();
    let mut trusted = file.trusted.unwrap_or_else(TrustedConfig::development);
    if let (Some(id), Some(key), Some(secret)) = (args.app_id, args.app_key, args.app_secret) {
        let mut app = AppConfig::new(&id, &key, "");
        app.secret = Secret::new(secret.clone());
        realtime.apps = vec![app];
        trusted.app_id = id;
        trusted.app_key = key;
        trusted.app_secret = Secret::new(secret);
    }
    if let Some(bind) = args.bind {
        realtime.bind = bind;
    }
    if !args.extra_binds.is_empty() {
        realtime.extra_binds = args.extra_binds.clone();
    }
    for app in &mut realtime.apps {
        if let Some(rate) = args.client_events_per_second {
            app.client_events_per_second = rate;
        }
        if let Some(url) = &args.webhook_url {
            app.webhook_url = Some(url.clone());
        }
    }
    if let Some(q) = args.outbound_queue {
        realtime.outbound_queue = q;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        realtime.tls_cert = Some(cert);
        realtime.tls_key = Some(key);
    }
    if let Some(ca) = &args.ca_file {
        domvia_calls::net::trust_ca_file(ca).map_err(|e| format!("--ca-file: {e}"))?;
    }
    if let Some(bind) = args.trusted_bind {
        trusted.bind = bind;
    }
    if let Some(url) = args.database_url {
        trusted.database_url = Some(url);
    }
    if let Some(dir) = args.data_dir {
        trusted.data_dir = dir;
    }
    if let Some(url) = args.realtime_api_url {
        trusted.realtime_api_url = url;
    }
    if let Some(url) = args.public_realtime_url {
        trusted.public_realtime_url = Some(url);
    }
    if let Some(path) = args.pusher_js {
        trusted.pusher_js = Some(path);
    }
    if let Some(path) = args.fixture.or_else(|| trusted.fixture.clone()) {
        let dir: Directory =
            toml::from_str(&read(&path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        trusted.directory = Some(dir);
    }
    if args.role != Role::Trusted {
        realtime.validate()?;
    }
    Ok((args.role, realtime, trusted))
}

/// The development credentials a server would expose on `addrs`, if any address is reachable
/// from other machines: what anyone who read the README could use against it.
fn exposed_dev_secrets(
    role: Role,
    realtime: &ServerConfig,
    trusted: &TrustedConfig,
) -> Option<String> {
    let mut addrs = Vec::new();
    if role != Role::Trusted {
        addrs.push(realtime.bind);
        addrs.extend(&realtime.extra_binds);
    }
    if role != Role::Realtime {
        addrs.push(trusted.bind);
    }
    let public: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if public.is_empty() {
        return None;
    }
    let mut dev = Vec::new();
    if role != Role::Trusted
        && realtime
            .apps
            .iter()
            .any(|a| a.secret == AppConfig::development().secret)
    {
        dev.push("the development app secret");
    }
    if role != Role::Realtime {
        if trusted.app_secret == AppConfig::development().secret {
            dev.push("the development app secret (trusted server)");
        }
        if trusted.privacy_master_key.expose() == DEVELOPMENT_MASTER_KEY {
            dev.push("the development privacy master key");
        }
        if trusted.directory.is_none() {
            dev.push("the demo users and their published tokens");
        }
    }
    (!dev.is_empty()).then(|| {
        format!(
            "refusing to serve {} on {}, which other machines can reach: give your own (--app-secret or [realtime] apps, [trusted] privacy_master_key, --fixture), bind to 127.0.0.1, or pass --allow-dev-secrets",
            dev.join(", "),
            public.join(", ")
        )
    })
}

pub fn run(args: ServeArgs) -> CliResult {
    let allow_dev_secrets = args.allow_dev_secrets;
    let (role, realtime, trusted) = build(args)?;
    if let Some(problem) = exposed_dev_secrets(role, &realtime, &trusted) {
        if !allow_dev_secrets {
            return Err(problem);
        }
        eprintln!("WARNING: {problem} (allowed by --allow-dev-secrets)");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a log file (and never with
        // NO_COLOR set, https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let development = realtime.apps == vec![AppConfig::development()];
        let (ws, http) = if realtime.tls() { ("wss", "https") } else { ("ws", "http") };
        let apps = realtime.apps.clone();
        let dev_key = trusted.privacy_master_key.expose() == DEVELOPMENT_MASTER_KEY;
        let demo_users = trusted.directory.is_none();
        let pusher_js = trusted_server::pusher_js_path(trusted.pusher_js.as_ref());
        let sqlite_file = trusted
            .database_url
            .is_none()
            .then(|| trusted.data_dir.join("calls.db"));
        let sqlite_is_new = sqlite_file.as_ref().is_some_and(|f| !f.exists());
        let demo_scope = demo_users.then(|| "room/chat-room-42".to_owned());
        let (realtime_addrs, trusted_addr, stop): (Vec<SocketAddr>, Option<SocketAddr>, Stop) = match role {
            Role::Both => {
                let s = stack::start(StackConfig { realtime, trusted }).await?;
                (s.realtime.addrs().to_vec(), Some(s.trusted.addr()), Stop::Stack(s))
            }
            Role::Realtime => {
                let r = server::start(realtime).await.map_err(|e| e.to_string())?;
                (r.addrs().to_vec(), None, Stop::Realtime(r))
            }
            Role::Trusted => {
                let t = trusted_server::start(trusted, None).await?;
                (Vec::new(), Some(t.addr()), Stop::Trusted(t))
            }
        };
        if let Some((addr, extra)) = realtime_addrs.split_first() {
            println!("domvia-calls realtime server listening on {addr}");
            for a in extra {
                println!("  and on {a} (the same server)");
            }
            for app in &apps {
                println!(
                    "  app id {}  key {}  client events {}/s  websocket {ws}://{addr}/app/{}?protocol=7  http api {http}://{addr}/apps/{}/",
                    app.id, app.key, app.client_events_per_second, app.key, app.id
                );
                if development {
                    println!(
                        "  secret {} (development default; give your own with --config or --app-secret)",
                        app.secret.expose()
                    );
                }
            }
        }
        if let Some(addr) = trusted_addr {
            println!("domvia-calls trusted server listening on {addr}");
            println!("  POST http://{addr}/realtime/auth  POST http://{addr}/calls  POST http://{addr}/realtime/webhooks  GET http://{addr}/calls/history|missed");
            if demo_users {
                println!("  demo users alice, bob, carol, dave with bearer tokens alice-token, bob-token, ...");
            }
            match &pusher_js {
                Some(path) => println!("  demo call page http://{addr}/demo/ (pusher-js from {})", path.display()),
                None => println!("  demo call page http://{addr}/demo/ needs pusher-js: run `npm ci --prefix tests/interop/pusher-js` here, or pass --pusher-js FILE"),
            }
            if dev_key {
                println!("  privacy master key: development default (set [trusted] privacy_master_key for real use)");
            }
            match &sqlite_file {
                Some(file) if role != Role::Realtime => println!(
                    "  call records in {} ({}; --data-dir or --database-url to change)",
                    file.display(),
                    if sqlite_is_new { "created now" } else { "existing" }
                ),
                _ => println!("  call records in the database of --database-url"),
            }
        }
        if let (Some(rt), Some(tr), Some(app)) = (realtime_addrs.first(), trusted_addr, apps.first()) {
            // The exact command that tests this deployment: what a newcomer runs next.
            let users = if demo_users {
                " --user alice=alice-token --user bob=bob-token --user dave=dave-token".to_owned()
            } else {
                " --user A=TOKEN --user B=TOKEN --user C=TOKEN".to_owned()
            };
            let scope = demo_scope.as_deref().unwrap_or("SCOPE/ID");
            // The development secret is public anyway (it is printed above); a real one is not.
            let dev_secret = app.secret.expose() == AppConfig::development().secret.expose();
            let secret = if dev_secret { app.secret.expose().to_owned() } else { "YOUR-APP-SECRET".to_owned() };
            println!("test it (in another terminal):");
            println!(
                "  DOMVIA_CONFORM_SECRET={secret} domvia-calls conform --target {ws}://{rt} --app-id {} --key {} --http-api {http}://{rt} --auth-endpoint http://{tr}/realtime/auth{users} --scope {scope}",
                app.id, app.key
            );
        }
        wait_for_signal().await;
        println!("shutting down: closing connections with 4200");
        match stop {
            Stop::Stack(s) => s.shutdown().await,
            Stop::Realtime(r) => r.shutdown().await,
            Stop::Trusted(t) => t.shutdown().await,
        }
        Ok(true)
    })
}

enum Stop {
    Stack(stack::RunningStack),
    Realtime(server::RunningServer),
    Trusted(trusted_server::RunningTrusted),
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
