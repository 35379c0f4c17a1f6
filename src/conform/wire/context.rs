//! The per-case context: the trace every case records, and the generated schemas every received
//! call event is checked against.

use super::*;

/// One line of a wire trace.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TraceEntry {
    /// Milliseconds since the case began.
    pub at_ms: u64,
    /// The connection or endpoint, as the case named it.
    pub conn: String,
    /// `>` sent by the kit, `<` received, `!` a note (close, timeout, HTTP status).
    pub dir: String,
    pub text: String,
}

/// Per-case state shared by the case's connections.
#[derive(Clone)]
pub struct Ctx {
    pub target: Arc<Target>,
    pub seed: u64,
    pub webhooks: Option<Arc<WebhookLog>>,
    trace: Arc<Mutex<Vec<TraceEntry>>>,
    schema_violations: Arc<Mutex<Vec<String>>>,
    /// SHOULDs the target broke while doing what the case requires.
    deviations: Arc<Mutex<Vec<Failure>>>,
    schemas: Arc<Schemas>,
    began: Instant,
    trace_text_bytes: usize,
}

impl Ctx {
    pub(in crate::conform) fn new(
        target: Arc<Target>,
        seed: u64,
        webhooks: Option<Arc<WebhookLog>>,
        schemas: Arc<Schemas>,
    ) -> Ctx {
        Ctx {
            target,
            seed,
            webhooks,
            trace: Arc::default(),
            schema_violations: Arc::default(),
            deviations: Arc::default(),
            schemas,
            began: Instant::now(),
            trace_text_bytes: TRACE_TEXT_BYTES,
        }
    }

    /// Keeps up to `bytes` of each frame's text in the trace.
    pub(in crate::conform) fn with_trace_text_bytes(mut self, bytes: usize) -> Ctx {
        self.trace_text_bytes = bytes;
        self
    }

    pub fn note(&self, conn: &str, dir: &str, text: &str) {
        let mut cut = text.len().min(self.trace_text_bytes);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let clipped = cut < text.len();
        let mut text = text[..cut].to_owned();
        if clipped {
            text.push('…');
        }
        let entry = TraceEntry {
            at_ms: self.began.elapsed().as_millis() as u64,
            conn: conn.to_owned(),
            dir: dir.to_owned(),
            text,
        };
        if let Ok(mut t) = self.trace.lock() {
            t.push(entry);
        }
    }

    pub(in crate::conform) fn take_trace(&self) -> Vec<TraceEntry> {
        self.trace
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    /// Records a broken SHOULD unless `cond` holds, and lets the case go on: a case that then
    /// passes is `non_strict`. Returns `cond`.
    pub fn should(
        &self,
        cond: bool,
        message: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> bool {
        if !cond {
            let f = Failure {
                message: message.into(),
                expected: expected.into(),
                actual: actual.into(),
            };
            self.note("kit", "!", &format!("SHOULD broken: {}", f.message));
            if let Ok(mut d) = self.deviations.lock() {
                d.push(f);
            }
        }
        cond
    }

    pub(in crate::conform) fn take_deviations(&self) -> Vec<Failure> {
        self.deviations
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    pub(in crate::conform) fn take_schema_violations(&self) -> Vec<String> {
        self.schema_violations
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// A tap that writes a reference client's frames into this case's trace as `conn`.
    pub fn tap(&self, conn: &str) -> crate::client::WireTap {
        use crate::client::WireDirection;
        let (ctx, conn) = (self.clone(), conn.to_owned());
        crate::client::WireTap(Arc::new(move |direction, text| {
            let dir = match direction {
                WireDirection::Sent => ">",
                WireDirection::Received => "<",
                WireDirection::Note => "!",
            };
            ctx.note(&conn, dir, text);
        }))
    }

    /// The app secret, or `unsupported` for targets tested without it.
    pub fn secret(&self) -> Step<&Secret> {
        self.target
            .secret
            .as_ref()
            .ok_or_else(|| Problem::Unsupported("needs the app secret (--secret)".into()))
    }

    /// A fresh channel name unique to this run and case.
    pub fn unique(&self, prefix: &str, tag: &str) -> String {
        format!("{prefix}conform-{tag}-{:x}", rand::random::<u64>())
    }

    /// Checks a received call event against its generated schema, recording violations.
    pub(super) fn check_schema(&self, conn: &str, frame: &Value) {
        let Some(event) = frame["event"].as_str() else {
            return;
        };
        let Some(logical) = event
            .strip_prefix("client-")
            .unwrap_or(event)
            .strip_prefix("call.")
        else {
            return;
        };
        let data = match &frame["data"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            v => v.clone(),
        };
        if let Some(problem) = self.schemas.check(logical, &data) {
            self.note(conn, "!", &format!("schema: {event}: {problem}"));
            if let Ok(mut v) = self.schema_violations.lock() {
                v.push(format!(
                    "{conn} received {event} that breaks its schema: {problem}"
                ));
            }
        }
    }

    /// Sends a signed HTTP API request; `tweak` may change the signed parameters (to break them).
    pub async fn http_api(
        &self,
        method: &str,
        path: &str,
        body: &str,
        tweak: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Step<(u16, String)> {
        self.http_api_custom(method, path, body, body, unix_now(), tweak, false)
            .await
    }

    /// An HTTP API request signed as if its body were `signed_body` at `timestamp`; `tweak`
    /// changes the parameters after signing, and `resign` signs them again afterwards (so only
    /// what the tweak changed is wrong).
    #[allow(clippy::too_many_arguments)]
    pub async fn http_api_custom(
        &self,
        method: &str,
        path: &str,
        body: &str,
        signed_body: &str,
        timestamp: u64,
        tweak: impl FnOnce(&mut Vec<(String, String)>),
        resign: bool,
    ) -> Step<(u16, String)> {
        let base = self
            .target
            .http_api
            .as_deref()
            .ok_or_else(|| Problem::Unsupported("needs the HTTP API (--http-api)".into()))?;
        let path = format!("/apps/{}{path}", self.target.app_id);
        let secret = self.secret()?;
        let mut signed = signing::sign_http_request(
            &self.target.key,
            secret,
            method,
            &path,
            Vec::new(),
            signed_body.as_bytes(),
            timestamp,
        );
        tweak(&mut signed);
        if resign {
            signed.retain(|(k, _)| k != "auth_signature");
            let sig = signing::hmac_sha256_hex(
                secret,
                &signing::http_string_to_sign(method, &path, &signed),
            );
            signed.push(("auth_signature".into(), sig));
        }
        let query: Vec<String> = signed
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        let url = format!("{}{path}?{}", base.trim_end_matches('/'), query.join("&"));
        self.note("http", ">", &format!("{method} {path} {body}"));
        let client = crate::net::http_client();
        let req = match method {
            "GET" => client.get(&url),
            _ => client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        };
        let resp = tokio::time::timeout(PROMPT, req.send())
            .await
            .map_err(|_| {
                errored(format!(
                    "HTTP API did not answer {method} {path} in {PROMPT:?}"
                ))
            })?
            .map_err(|e| errored(format!("HTTP API request failed: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        self.note("http", "<", &format!("{status} {text}"));
        Ok((status, text))
    }
}

/// The generated JSON Schemas, compiled once per run.
pub struct Schemas {
    events: BTreeMap<&'static str, jsonschema::Validator>,
    sealed: jsonschema::Validator,
}

impl Schemas {
    pub fn compile() -> Result<Schemas, crate::error::ToolError> {
        let compile = |v: &Value| jsonschema::validator_for(v).map_err(|e| e.to_string());
        let mut events = BTreeMap::new();
        for kind in EventKind::ALL {
            let logical = kind.name().trim_start_matches("call.");
            events.insert(logical, compile(&crate::schema::event_schema(kind))?);
        }
        Ok(Schemas {
            events,
            sealed: compile(&crate::schema::sealed_schema())?,
        })
    }

    /// Why `data` breaks the schema of `call.{logical}`, if it does.
    pub fn check(&self, logical: &str, data: &Value) -> Option<String> {
        let validator = if data.get("sealed").is_some() {
            &self.sealed
        } else {
            match self.events.get(logical) {
                Some(v) => v,
                None => return Some(format!("call.{logical} is not a call event")),
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(data)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}
