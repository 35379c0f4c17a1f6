//! `domvia-calls sign ...`: compute or verify each kind of signature for people debugging their
//! auth code. Always prints the exact string that is signed, escaped, since a mismatch is almost
//! always a difference there. Secrets come from flags or environment variables and are never
//! printed.

use std::fs;
use std::path::PathBuf;

use base64::Engine;
use clap::{Args, Subcommand};
use domvia_calls::channel::CallChannel;
use domvia_calls::envelope::ChannelKey;
use domvia_calls::ids::SocketId;
use domvia_calls::signing::{self, Secret};

use super::CliResult;

#[derive(Debug, Args)]
pub struct App {
    /// The app key.
    #[arg(long, env = "DOMVIA_APP_KEY")]
    key: String,
    /// The app secret (prefer the environment variable to keep it out of shell history).
    #[arg(long, env = "DOMVIA_APP_SECRET", hide_env_values = true)]
    secret: String,
}

#[derive(Debug, Args)]
pub struct Body {
    /// Request or webhook body as text.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from a file, byte for byte.
    #[arg(long)]
    body_file: Option<PathBuf>,
}

impl Body {
    fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_file) {
            (Some(b), _) => Ok(b.clone().into_bytes()),
            (None, Some(p)) => fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display())),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SignKind {
    /// Private channel authorization: HMAC of `{socket_id}:{channel}`.
    Private {
        #[command(flatten)]
        app: App,
        /// The socket id from the connection's `pusher:connection_established` (digits.digits).
        #[arg(long)]
        socket_id: String,
        /// The channel name, as subscribed.
        #[arg(long)]
        channel: String,
        /// Verify this `key:signature` instead of only printing the expected one.
        #[arg(long)]
        verify: Option<String>,
    },
    /// Presence channel authorization: HMAC of `{socket_id}:{channel}:{channel_data}`.
    Presence {
        #[command(flatten)]
        app: App,
        /// The socket id from the connection's `pusher:connection_established` (digits.digits).
        #[arg(long)]
        socket_id: String,
        /// The channel name, as subscribed.
        #[arg(long)]
        channel: String,
        /// The exact channel_data JSON text the client sends.
        #[arg(long)]
        channel_data: String,
        /// Verify this `key:signature` instead of only printing the expected one.
        #[arg(long)]
        verify: Option<String>,
    },
    /// User sign-in: HMAC of `{socket_id}::user::{user_data}`.
    User {
        #[command(flatten)]
        app: App,
        /// The socket id from the connection's `pusher:connection_established` (digits.digits).
        #[arg(long)]
        socket_id: String,
        /// The exact user_data JSON text the client sends (with an `id`).
        #[arg(long)]
        user_data: String,
        /// Verify this `key:signature` instead of only printing the expected one.
        #[arg(long)]
        verify: Option<String>,
    },
    /// HTTP API request: sign (prints the full query) or, with --verify-query, verify.
    Http {
        #[command(flatten)]
        app: App,
        /// The HTTP method, as sent.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request path, e.g. /apps/1/events.
        #[arg(long)]
        path: String,
        /// Non-auth query parameters (raw query string) when signing.
        #[arg(long, default_value = "")]
        params: String,
        #[command(flatten)]
        body: Body,
        /// auth_timestamp to sign with (Unix seconds); defaults to now.
        #[arg(long)]
        timestamp: Option<u64>,
        /// A received raw query string to verify instead of signing.
        #[arg(long)]
        verify_query: Option<String>,
        /// The verifier's clock (Unix seconds); defaults to now.
        #[arg(long)]
        now: Option<u64>,
    },
    /// Webhook: hex HMAC-SHA256 of the raw body (`X-Pusher-Signature`).
    Webhook {
        #[command(flatten)]
        app: App,
        #[command(flatten)]
        body: Body,
        /// Verify this X-Pusher-Signature.
        #[arg(long)]
        verify: Option<String>,
    },
    /// TURN REST credential (coturn use-auth-secret).
    Turn {
        /// The TURN server's shared secret (coturn `static-auth-secret`).
        #[arg(long, env = "DOMVIA_TURN_SECRET", hide_env_values = true)]
        secret: String,
        /// The user id to mint a credential for.
        #[arg(long)]
        user: Option<String>,
        /// Lifetime in seconds from now when minting.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Verify this username (with --password) instead of minting.
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// The password to verify with --username.
        #[arg(long)]
        password: Option<String>,
        /// The verifier's clock (Unix seconds); defaults to now.
        #[arg(long)]
        now: Option<u64>,
    },
    /// Strong-privacy channel key: HKDF of the master key for a call channel, and its kid.
    ChannelKey {
        /// Privacy master key, standard base64.
        #[arg(long, env = "DOMVIA_PRIVACY_MASTER_KEY", hide_env_values = true)]
        master_key: String,
        /// The call channel the key is for.
        #[arg(long)]
        channel: String,
        /// Print the derived shared_secret too (it is a secret).
        #[arg(long)]
        show_secret: bool,
    },
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn socket(s: &str) -> Result<SocketId, String> {
    SocketId::parse(s).map_err(|e| format!("socket_id `{s}` {e}"))
}

fn report(expected: &str, verify: Option<Result<(), signing::SignatureError>>) -> CliResult {
    println!("expected:       {expected}");
    match verify {
        None => Ok(true),
        Some(Ok(())) => {
            println!("verify:         OK");
            Ok(true)
        }
        Some(Err(e)) => {
            println!("verify:         FAILED [{}] {e}", e.code());
            Ok(false)
        }
    }
}

pub fn run(kind: SignKind) -> CliResult {
    match kind {
        SignKind::Private {
            app,
            socket_id,
            channel,
            verify,
        } => channel_auth(&app, &socket_id, &channel, None, verify),
        SignKind::Presence {
            app,
            socket_id,
            channel,
            channel_data,
            verify,
        } => channel_auth(&app, &socket_id, &channel, Some(&channel_data), verify),
        SignKind::User {
            app,
            socket_id,
            user_data,
            verify,
        } => {
            let (sock, secret) = (socket(&socket_id)?, Secret::new(app.secret));
            let msg = signing::user_string_to_sign(&sock, &user_data);
            println!("string to sign: {msg:?}");
            let auth = signing::sign_user(&app.key, &secret, &sock, &user_data);
            let check = verify.map(|v| {
                signing::verify_user(&app.key, &secret, &sock, &user_data, &v).map(|_| ())
            });
            report(&auth, check)
        }
        SignKind::Http {
            app,
            method,
            path,
            params,
            body,
            timestamp,
            verify_query,
            now,
        } => {
            let (secret, body) = (Secret::new(app.secret), body.bytes()?);
            if let Some(query) = verify_query {
                let params = signing::parse_query(&query).map_err(|e| e.to_string())?;
                println!(
                    "string to sign: {:?}",
                    signing::http_string_to_sign(&method, &path, &params)
                );
                let now = now.unwrap_or_else(now_unix);
                let check = signing::verify_http_request(
                    &app.key, &secret, &method, &path, &query, &body, now,
                );
                return report("(see string to sign)", Some(check));
            }
            let params = signing::parse_query(&params).map_err(|e| e.to_string())?;
            let signed = signing::sign_http_request(
                &app.key,
                &secret,
                &method,
                &path,
                params,
                &body,
                timestamp.unwrap_or_else(now_unix),
            );
            println!(
                "string to sign: {:?}",
                signing::http_string_to_sign(&method, &path, &signed)
            );
            let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("query:          {}", query.join("&"));
            Ok(true)
        }
        SignKind::Webhook { app, body, verify } => {
            let (secret, body) = (Secret::new(app.secret), body.bytes()?);
            let sig = signing::sign_webhook(&secret, &body);
            let check =
                verify.map(|v| signing::verify_webhook(&app.key, &secret, &app.key, &v, &body));
            report(&sig, check)
        }
        SignKind::Turn {
            secret,
            user,
            ttl,
            username,
            password,
            now,
        } => {
            let secret = Secret::new(secret);
            let now = now.unwrap_or_else(now_unix);
            if let (Some(username), Some(password)) = (username, password) {
                let check =
                    signing::verify_turn_credential(&secret, &username, &password, now).map(|_| ());
                return report(&username, Some(check));
            }
            let user = user.ok_or("--user is needed to mint a credential")?;
            let cred = signing::turn_credential(&secret, &user, now + ttl);
            println!("username:       {}", cred.username);
            println!("password:       {}", cred.password);
            Ok(true)
        }
        SignKind::ChannelKey {
            master_key,
            channel,
            show_secret,
        } => {
            let master = base64::engine::general_purpose::STANDARD
                .decode(master_key.trim())
                .map_err(|_| "master key is not standard base64".to_owned())?;
            let channel =
                CallChannel::parse(&channel).map_err(|e| format!("[{}] {e}", e.code()))?;
            let key = ChannelKey::derive(&master, &channel);
            println!("kid:            {}", key.kid());
            if show_secret {
                println!("shared_secret:  {}", key.shared_secret());
            }
            Ok(true)
        }
    }
}

fn channel_auth(
    app: &App,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    verify: Option<String>,
) -> CliResult {
    let (sock, secret) = (socket(socket_id)?, Secret::new(app.secret.clone()));
    println!(
        "string to sign: {:?}",
        signing::channel_string_to_sign(&sock, channel, channel_data)
    );
    let auth = signing::sign_channel(&app.key, &secret, &sock, channel, channel_data);
    let check = verify.map(|v| {
        signing::verify_channel(&app.key, &secret, &sock, channel, channel_data, &v).map(|_| ())
    });
    report(&auth, check)
}
