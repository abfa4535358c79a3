//! `recpipe serve`: HTTP answers from the live version, which is swapped for a newly published
//! one without failing a request in flight (each request holds its own reference to the version
//! it started with).
//!
//! - `GET /v1/users/{id}/candidates?k=&rerank=`
//! - `POST /v1/recommend` with `{"history": [item ids], "user_id": optional, "k": optional,
//!   "rerank": optional}`
//! - `GET /healthz`, `GET /metrics` (Prometheus text)

use crate::artifacts::current_name;
use crate::error::{Error, Result};
use crate::serving::LiveModel;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// `[serve]`: limits and timings of the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Largest `k` a request may ask for.
    pub max_k: usize,
    /// Default `k`.
    pub default_k: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// A request taking longer gets 503.
    pub request_timeout_ms: u64,
    /// How often `CURRENT` is checked for a new version.
    pub poll_interval_ms: u64,
    /// Index beam width (default: the index's configured one).
    pub ef: Option<usize>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_k: 1_000,
            default_k: 10,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 2_000,
            poll_interval_ms: 1_000,
            ef: None,
        }
    }
}

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Metrics {
    requests: Mutex<HashMap<(&'static str, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    swaps: AtomicU64,
}

impl Metrics {
    fn observe(&self, endpoint: &'static str, status: StatusCode, secs: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint, status.as_u16())).or_default() += 1;
        }
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, version: &str) -> String {
        let mut s = String::new();
        s.push_str("# HELP recpipe_requests_total Requests by endpoint and status.\n");
        s.push_str("# TYPE recpipe_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for ((e, code), n) in rows {
                s.push_str(&format!(
                    "recpipe_requests_total{{endpoint=\"{e}\",status=\"{code}\"}} {n}\n"
                ));
            }
        }
        s.push_str("# HELP recpipe_request_duration_seconds Request latency.\n");
        s.push_str("# TYPE recpipe_request_duration_seconds histogram\n");
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            s.push_str(&format!(
                "recpipe_request_duration_seconds_bucket{{le=\"{le}\"}} {}\n",
                b.load(Ordering::Relaxed)
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        s.push_str(&format!(
            "recpipe_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        s.push_str(&format!(
            "recpipe_request_duration_seconds_sum {}\n",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        s.push_str(&format!("recpipe_request_duration_seconds_count {count}\n"));
        s.push_str("# HELP recpipe_live_version The version being served.\n");
        s.push_str("# TYPE recpipe_live_version gauge\n");
        s.push_str(&format!(
            "recpipe_live_version{{version=\"{version}\"}} 1\n"
        ));
        s.push_str("# TYPE recpipe_version_swaps_total counter\n");
        s.push_str(&format!(
            "recpipe_version_swaps_total {}\n",
            self.swaps.load(Ordering::Relaxed)
        ));
        s
    }
}

struct AppState {
    live: RwLock<Arc<LiveModel>>,
    metrics: Metrics,
    cfg: ServeConfig,
}

impl AppState {
    fn live(&self) -> Arc<LiveModel> {
        match self.live.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

fn json_error(status: StatusCode, msg: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": msg.into() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_ok(value: &impl Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query string of the candidates endpoint.
#[derive(Debug, Deserialize)]
struct CandidatesQuery {
    k: Option<String>,
    rerank: Option<String>,
}

/// Body of `POST /v1/recommend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendBody {
    #[serde(default)]
    history: Vec<JsonId>,
    user_id: Option<JsonId>,
    k: Option<usize>,
    #[serde(default)]
    rerank: bool,
}

/// An id in a JSON body: a number, or a string id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonId {
    Int(i64),
    Text(String),
}

impl JsonId {
    fn text(&self) -> String {
        match self {
            JsonId::Int(n) => n.to_string(),
            JsonId::Text(s) => s.clone(),
        }
    }
}

fn parse_k(raw: Option<&str>, cfg: &ServeConfig) -> std::result::Result<usize, String> {
    let k = match raw {
        None => cfg.default_k,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| format!("k = '{s}' is not a number"))?,
    };
    check_k(k, cfg)
}

fn check_k(k: usize, cfg: &ServeConfig) -> std::result::Result<usize, String> {
    if k == 0 || k > cfg.max_k {
        return Err(format!("k = {k} must be 1..={}", cfg.max_k));
    }
    Ok(k)
}

fn parse_bool(raw: Option<&str>) -> std::result::Result<bool, String> {
    match raw {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(s) => Err(format!("rerank = '{s}' must be true or false")),
    }
}

/// Runs the recommendation on the blocking pool under the request timeout.
async fn answer(
    state: Arc<AppState>,
    user: Option<i64>,
    history: Vec<i64>,
    k: usize,
    rerank: bool,
) -> Response {
    let live = state.live();
    let ef = state.cfg.ef;
    let work =
        tokio::task::spawn_blocking(move || live.recommend_ranked(user, &history, k, ef, rerank));
    match tokio::time::timeout(Duration::from_millis(state.cfg.request_timeout_ms), work).await {
        Err(_) => json_error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok(Ok(Err(Error::Input(msg)))) => json_error(StatusCode::BAD_REQUEST, msg),
        Ok(Ok(Err(e))) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Ok(Ok(Ok(rec))) => json_ok(&rec),
    }
}

async fn candidates(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    query: std::result::Result<Query<CandidatesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let t = Instant::now();
    let resp = async {
        let user = match state.live().user_id(&id) {
            Ok(u) => u,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let q = match query {
            Ok(Query(q)) => q,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.body_text()),
        };
        let k = match parse_k(q.k.as_deref(), &state.cfg) {
            Ok(k) => k,
            Err(m) => return json_error(StatusCode::BAD_REQUEST, m),
        };
        let rerank = match parse_bool(q.rerank.as_deref()) {
            Ok(r) => r,
            Err(m) => return json_error(StatusCode::BAD_REQUEST, m),
        };
        answer(state.clone(), Some(user), Vec::new(), k, rerank).await
    }
    .await;
    state
        .metrics
        .observe("candidates", resp.status(), t.elapsed().as_secs_f64());
    resp
}

async fn recommend(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let t = Instant::now();
    let resp = async {
        let req: RecommendBody = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return json_error(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}"))
            }
        };
        let k = match check_k(req.k.unwrap_or(state.cfg.default_k), &state.cfg) {
            Ok(k) => k,
            Err(m) => return json_error(StatusCode::BAD_REQUEST, m),
        };
        if req.history.len() > 10_000 {
            return json_error(StatusCode::BAD_REQUEST, "history has more than 10000 items");
        }
        let live = state.live();
        let user = match req.user_id.map(|u| live.user_id(&u.text())).transpose() {
            Ok(u) => u,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let texts: Vec<String> = req.history.iter().map(JsonId::text).collect();
        let history = match live.item_ids(&texts) {
            Ok(h) => h,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        answer(state.clone(), user, history, k, req.rerank).await
    }
    .await;
    state
        .metrics
        .observe("recommend", resp.status(), t.elapsed().as_secs_f64());
    resp
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let live = state.live();
    json_ok(&serde_json::json!({
        "status": "ok",
        "version": live.version,
        "items": live.num_items(),
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(&state.live().version);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Checks `CURRENT` and swaps in a newly published version once it loads; a version that fails
/// to load is logged and skipped while the old one keeps serving.
async fn watch(state: Arc<AppState>, root: PathBuf, data: Option<PathBuf>) {
    let mut failed: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(state.cfg.poll_interval_ms)).await;
        let name = match current_name(&root) {
            Ok(Some(n)) => n,
            _ => continue,
        };
        if name == state.live().version || failed.as_ref() == Some(&name) {
            continue;
        }
        let (r, d) = (root.clone(), data.clone());
        let loaded = tokio::task::spawn_blocking(move || LiveModel::load(&r, d.as_deref())).await;
        match loaded {
            Ok(Ok(m)) => {
                tracing::info!(version = %m.version, "serving a new version");
                if let Ok(mut g) = state.live.write() {
                    *g = Arc::new(m);
                }
                state.metrics.swaps.fetch_add(1, Ordering::Relaxed);
                failed = None;
            }
            Ok(Err(e)) => {
                tracing::warn!(version = %name, error = %e, "new version not loaded; still serving the old one");
                failed = Some(name);
            }
            Err(e) => tracing::warn!(error = %e, "loader task failed"),
        }
    }
}

/// Serves `root`'s live version on `addr` until Ctrl-C. `ready` is called with the bound address.
pub fn serve(root: &Path, data: Option<&Path>, addr: &str, cfg: ServeConfig) -> Result<()> {
    let live = LiveModel::load(root, data)?;
    let state = Arc::new(AppState {
        live: RwLock::new(Arc::new(live)),
        metrics: Metrics::default(),
        cfg: cfg.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("tokio runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Input(format!("--addr {addr}: cannot listen: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("local address: {e}")))?;
        println!("serving version {} on http://{bound}", state.live().version);
        tokio::spawn(watch(
            state.clone(),
            root.to_path_buf(),
            data.map(Path::to_path_buf),
        ));
        let app = Router::new()
            .route("/v1/users/{id}/candidates", get(candidates))
            .route("/v1/recommend", post(recommend))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
            .with_state(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| Error::Other(format!("server: {e}")))
    })
}
