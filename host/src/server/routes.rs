//! The routes of SERVER.md section 3. Every `/v1` route authenticates the
//! tenant first; another tenant's objects answer 404, never 403.

use super::error::ApiError;
use super::hub::LiveEvent;
use super::quota::Admission;
use super::tenants::Tenant;
use super::ServerState;
use crate::app::{RecipeSource, RunOptions};
use crate::engine::error::RunError;
use crate::engine::events::RunStatus;
use crate::engine::runner::{self, NotStarted};
use crate::recipe::model::{InputType, NodeKind, Recipe};
use crate::store::{Created, NewRun, RunFilter, RunRecord};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Shared = State<Arc<ServerState>>;
type ApiResult = Result<Response, ApiError>;

/// `/healthz`, `/readyz` and `/metrics`: what a `serve` process answers
/// beside the API, and all a worker's `--metrics-addr` listener answers.
fn probe_routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
}

/// A worker's listener: probes and metrics only.
pub fn probes(state: Arc<ServerState>) -> Router {
    probe_routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_log,
        ))
        .with_state(state)
}

pub fn router(state: Arc<ServerState>) -> Router {
    let max_body = state.settings.max_body_bytes;
    let max_plugin = state.settings.max_plugin_bytes;
    Router::new()
        .route("/", get(super::web::index))
        .route("/assets/{name}", get(super::web::asset))
        .merge(probe_routes())
        .route("/v1/recipes", get(list_recipes))
        .route("/v1/recipes/{name}", get(get_recipe))
        .route("/v1/recipes/{name}/runs", post(run_named))
        .route("/v1/runs", post(run_inline).get(list_runs))
        .route("/v1/runs/{id}", get(get_run).delete(cancel_run))
        .route("/v1/runs/{id}/events", get(events))
        .route("/v1/runs/{id}/replies/{node}", post(reply))
        .route("/v1/runs/{id}/files", get(list_files))
        .route("/v1/runs/{id}/files/{name}", get(get_file))
        .route(
            "/v1/plugins",
            post(upload_plugin)
                .get(list_plugins)
                .layer(DefaultBodyLimit::max(max_plugin)),
        )
        .route("/v1/plugins/{name}", delete(delete_plugin))
        .route("/v1/files", post(upload_file))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_log,
        ))
        .with_state(state)
}

/// Request id (given or made), and one structured log line per request
/// with tenant, route, status and latency.
async fn request_log(State(state): Shared, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    if let Ok(v) = HeaderValue::from_str(&id) {
        request.headers_mut().insert("x-request-id", v);
    }
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let tenant = state
        .authenticate(auth_header(request.headers()))
        .map(|t| t.id().to_string())
        .unwrap_or_default();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(request_id = %id, tenant = %tenant, method = %method, route = %route, status, latency_ms, "request");
    metrics::histogram!("composer_http_request_duration_seconds", "route" => route, "status" => status.to_string())
        .record(latency_ms / 1000.0);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn auth_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn tenant_of(state: &ServerState, headers: &HeaderMap) -> Result<Arc<Tenant>, ApiError> {
    state
        .authenticate(auth_header(headers))
        .ok_or_else(ApiError::unauthorized)
}

/// A request body: 413 naming the setting when it is over its cap, 400
/// when it cannot be read.
fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    what: &str,
    cap: &str,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("{what} is larger than `{cap}`"),
            )
        } else {
            ApiError::bad_request(format!("cannot read {what}: {e}"))
        }
    })
}

/// A JSON body: 413 over the cap, 400 naming what is wrong.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body_bytes(body, "the body", "server.max_body_bytes")?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

async fn readyz(State(state): Shared) -> Response {
    match state.readiness().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => ApiError::unavailable(format!("not ready: {e}")).into_response(),
    }
}

async fn prometheus(State(state): Shared, headers: HeaderMap) -> ApiResult {
    if let Some(expected) = &state.settings.metrics_token_sha256 {
        let given = super::tenants::bearer_hash(auth_header(&headers));
        let expected = expected.trim().to_ascii_lowercase();
        let ok = given.is_some_and(|g| {
            use subtle::ConstantTimeEq;
            let hex: String = g.iter().map(|b| format!("{b:02x}")).collect();
            bool::from(hex.as_bytes().ct_eq(expected.as_bytes()))
        });
        if !ok {
            return Err(ApiError::unauthorized());
        }
    }
    let depth = state.queue.depth().await.unwrap_or_default();
    for t in &state.tenants {
        let n = depth
            .iter()
            .find(|(id, _)| id == t.id())
            .map(|(_, n)| *n)
            .unwrap_or(0);
        metrics::gauge!("composer_queue_depth", "tenant" => t.id().to_string()).set(n as f64);
    }
    let text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

// ---------------------------------------------------------------- recipes

fn recipe_summary(name: &str, recipe: &Recipe) -> Value {
    json!({
        "name": name,
        "description": recipe.description,
        "inputs": crate::recipe::inputs::json_schema(&recipe.name, &recipe.user_inputs),
    })
}

async fn list_recipes(State(state): Shared, headers: HeaderMap) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let mut recipes = Vec::new();
    for (name, path) in tenant.recipe_files() {
        match crate::recipe::load_file(&path) {
            Ok(l) => recipes.push(recipe_summary(&name, &l.recipe)),
            // A broken recipe is listed with its problem, not hidden.
            Err(f) => recipes.push(json!({
                "name": name,
                "description": null,
                "inputs": null,
                "error": f.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        }
    }
    Ok(Json(json!({"recipes": recipes})).into_response())
}

fn find_recipe(tenant: &Tenant, name: &str) -> Result<PathBuf, ApiError> {
    tenant
        .recipe_files()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
        .ok_or_else(|| ApiError::not_found(&format!("recipe `{name}`")))
}

fn invalid_recipe(failure: &crate::recipe::LoadFailure) -> ApiError {
    let diagnostics: Vec<Value> = failure
        .diagnostics
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    ApiError::unprocessable("invalid_recipe", "the recipe is invalid")
        .with("diagnostics", Value::Array(diagnostics))
}

async fn get_recipe(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let path = find_recipe(&tenant, &name)?;
    let loaded = crate::recipe::load_file(&path).map_err(|f| invalid_recipe(&f))?;
    let mut v = recipe_summary(&name, &loaded.recipe);
    if let Ok(plan) = crate::engine::plan::Plan::build(loaded.recipe.clone()) {
        v["graph"] = json!(crate::recipe::graph::mermaid(&plan));
        // The same graph as data, for the web page.
        v["plan"] = crate::recipe::graph::plan_json(&plan);
    } else {
        v["graph"] = json!("");
    }
    Ok(Json(v).into_response())
}

// ---------------------------------------------------------------- runs

#[derive(Deserialize, Default)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

async fn run_named(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<WaitQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let path = find_recipe(&tenant, &name)?;
    let body = json_body(body)?;
    let loaded = crate::recipe::load_file(&path).map_err(|f| invalid_recipe(&f))?;
    let source = RecipeSource::File(std::fs::canonicalize(&path).unwrap_or(path));
    start_run(&state, &tenant, source, loaded.recipe, &body, q.wait).await
}

async fn run_inline(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<WaitQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let body = json_body(body)?;
    let text = match body.get("recipe") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`recipe` must be a mapping, or YAML or JSON text",
            ))
        }
        None => return Err(ApiError::bad_request("the body needs a `recipe`")),
    };
    // Inline recipes resolve imports and sub-recipes inside the tenant's
    // own folder only.
    let base_dir = tenant.data_dir.join("inline");
    std::fs::create_dir_all(&base_dir).map_err(ApiError::internal)?;
    let loaded = crate::recipe::load_str(&text, crate::recipe::document::Format::Yaml, &base_dir)
        .map_err(|f| invalid_recipe(&f))?;
    let source = RecipeSource::Inline { text, base_dir };
    start_run(&state, &tenant, source, loaded.recipe, &body, q.wait).await
}

/// Providers a recipe's nodes (and sub-recipes) may call.
fn providers_of(recipe: &Recipe, out: &mut Vec<String>) {
    let mut add = |m: &crate::recipe::model::ModelSpec| {
        if !out.contains(&m.provider) {
            out.push(m.provider.clone());
        }
    };
    if let Some(m) = &recipe.model_config {
        add(m);
    }
    let mut subs = Vec::new();
    for node in &recipe.nodes {
        let nodes = match &node.kind {
            NodeKind::Map(spec) => vec![node, &spec.task],
            _ => vec![node],
        };
        for n in nodes {
            if let Some(m) = &n.model {
                add(m);
            }
            if let NodeKind::LanguageTask { fallback, .. } = &n.kind {
                for m in fallback {
                    add(m);
                }
            }
            if let NodeKind::Recipe(sub) = &n.kind {
                subs.push(sub.recipe.clone());
            }
        }
    }
    for s in subs {
        providers_of(&s, out);
    }
}

fn check_endpoints(tenant: &Tenant, recipe: &Recipe) -> Result<(), ApiError> {
    let Some(allowed) = &tenant.settings.endpoints else {
        return Ok(());
    };
    let mut used = Vec::new();
    providers_of(recipe, &mut used);
    // The mock provider is offline and carries no key.
    let refused: Vec<&String> = used
        .iter()
        .filter(|p| p.as_str() != "mock" && !allowed.contains(p))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "endpoint_not_allowed",
        format!(
            "the recipe calls {} which tenant `{}` may not use (allowed: {})",
            refused
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            tenant.id(),
            allowed.join(", ")
        ),
    )
    .with("endpoints", json!(refused)))
}

/// `file` inputs name uploads or paths inside the tenant's data folder.
fn resolve_files(
    tenant: &Tenant,
    recipe: &Recipe,
    values: &mut serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    let root = std::fs::canonicalize(&tenant.data_dir).unwrap_or(tenant.data_dir.clone());
    let mut problems = serde_json::Map::new();
    for input in recipe
        .user_inputs
        .iter()
        .filter(|i| i.input_type == InputType::File)
    {
        let Some(value) = values.get_mut(&input.id) else {
            continue;
        };
        let resolve = |text: &str| -> Option<String> {
            let p = root.join(text.trim_start_matches('/'));
            let p = if std::path::Path::new(text).is_absolute() {
                PathBuf::from(text)
            } else {
                p
            };
            let real = std::fs::canonicalize(&p).ok()?;
            real.starts_with(&root).then(|| real.display().to_string())
        };
        match value {
            Value::String(s) => match resolve(s) {
                Some(p) => *s = p,
                None => {
                    problems.insert(
                        input.id.clone(),
                        json!(format!("`{s}` is not a file inside this tenant's data folder (upload it with POST /v1/files)")),
                    );
                }
            },
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::String(s) = item {
                        match resolve(s) {
                            Some(p) => *s = p,
                            None => {
                                problems.insert(
                                    input.id.clone(),
                                    json!(format!(
                                        "`{s}` is not a file inside this tenant's data folder"
                                    )),
                                );
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_input",
            "file inputs must be inside the tenant's data folder",
        )
        .with("inputs", Value::Object(problems)))
    }
}

fn not_started(e: &NotStarted) -> ApiError {
    match &e.0 {
        RunError::Inputs(problems) => {
            let mut by_input = serde_json::Map::new();
            for p in problems {
                by_input.insert(p.input.clone(), json!(p.to_string()));
            }
            ApiError::unprocessable("invalid_input", e.0.to_string())
                .with("inputs", Value::Object(by_input))
        }
        RunError::InvalidRecipe(d) => {
            ApiError::unprocessable("invalid_recipe", e.0.to_string()).with("diagnostics", json!(d))
        }
        RunError::Preflight(p) => {
            ApiError::unprocessable("cannot_start", e.0.to_string()).with("problems", json!(p))
        }
        other => ApiError::unprocessable("cannot_start", other.to_string()),
    }
}

async fn start_run(
    state: &Arc<ServerState>,
    tenant: &Arc<Tenant>,
    source: RecipeSource,
    recipe: Arc<Recipe>,
    body: &Value,
    wait: bool,
) -> ApiResult {
    let inputs = match body.get("inputs") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::bad_request("`inputs` must be a mapping")),
    };
    let idempotency_key = match body.get("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => Some(k.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`idempotency_key` must be text of 1 to 256 characters",
            ))
        }
    };
    if let Some(key) = &idempotency_key {
        let mine = state
            .store
            .runs(RunFilter {
                tenant: Some(tenant.id().to_string()),
                ..Default::default()
            })
            .await?;
        if let Some(existing) = mine
            .iter()
            .find(|r| r.idempotency_key.as_ref() == Some(key))
        {
            return answer_existing(state, existing, wait).await;
        }
    }
    check_endpoints(tenant, &recipe)?;
    let options = RunOptions {
        model_override: None,
        out_root: tenant.runs_dir(),
        replies: HashMap::new(),
        events: Arc::new(crate::engine::events::NoEvents),
        allow_extra_inputs: false,
        cache_mode: crate::cache::CacheMode::Use,
        human: None,
        local_functions: Some(tenant.local_functions()),
        plugin_policy: tenant.plugin_policy(),
    };
    let services = state.app.services(&recipe, &options).await;
    let mut prepared = runner::prepare(
        &services,
        &recipe,
        &inputs,
        false,
        None,
        Some(&tenant.data_dir),
    )
    .map_err(|e| not_started(&e))?;
    resolve_files(tenant, &recipe, &mut prepared.values)?;
    // Counting the tenant's unfinished runs and recording the new one are
    // one step per tenant: simultaneous requests cannot all pass a
    // `concurrent_runs` cap that only one of them fits under.
    let admission = match tenant.settings.quotas.concurrent_runs {
        Some(_) => state
            .quotas
            .lock_admission(tenant.id(), &tenant.admission)
            .await
            .map_err(|r| ApiError::refusal(&r))?,
        None => Admission::None,
    };
    let created = async {
        let unfinished = unfinished_runs(state, tenant).await?;
        state
            .quotas
            .admit(tenant.id(), &tenant.settings.quotas, unfinished)
            .await
            .map_err(|r| ApiError::refusal(&r))?;
        let run_id = runner::new_run_id();
        let out_dir = state
            .blobs
            .run_dir(&tenant.blob_scope(), &run_id)
            .map_err(|e| ApiError::internal(format!("cannot create the run's folder: {e}")))?;
        let new = NewRun {
            id: run_id.clone(),
            tenant: tenant.id().to_string(),
            recipe: recipe.name.clone(),
            recipe_path: recipe.file.as_ref().map(|f| f.display().to_string()),
            inputs: Value::Object(prepared.values),
            spec: json!({"source": source.to_json(), "out_dir": out_dir, "cache_mode": "use"}),
            idempotency_key,
            status: RunStatus::Queued,
        };
        Ok::<_, ApiError>(state.store.create_run(new).await?)
    }
    .await;
    state.quotas.unlock_admission(admission).await;
    let record = match created? {
        Created::Existing(r) => return answer_existing(state, &r, wait).await,
        Created::New(r) => r,
    };
    let finished = state.finished.subscribe();
    state.queue.enqueue(&record.id, tenant.id()).await?;
    state.wake.notify_one();
    if wait {
        return wait_for(state, &record.id, finished).await;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": record.id, "status": "queued"})),
    )
        .into_response())
}

/// The tenant's queued and running runs, up to its `concurrent_runs` cap
/// (0 without one). Counted from the runs' status, not the work queue: a
/// run that has ended stops counting at once, before its worker has taken
/// it off the queue.
async fn unfinished_runs(state: &ServerState, tenant: &Tenant) -> Result<u64, ApiError> {
    let Some(cap) = tenant.settings.quotas.concurrent_runs else {
        return Ok(0);
    };
    let mut n = 0;
    for status in [RunStatus::Queued, RunStatus::Running] {
        let runs = state
            .store
            .runs(RunFilter {
                tenant: Some(tenant.id().to_string()),
                status: Some(status.as_str().to_string()),
                limit: Some(usize::try_from(cap).unwrap_or(usize::MAX).saturating_add(1)),
                ..Default::default()
            })
            .await?;
        n += runs.len() as u64;
    }
    Ok(n)
}

async fn answer_existing(state: &Arc<ServerState>, run: &RunRecord, wait: bool) -> ApiResult {
    let status = run.run_status();
    if wait && !status.is_final() && status != RunStatus::Waiting {
        return wait_for(state, &run.id, state.finished.subscribe()).await;
    }
    if wait {
        return Ok(Json(run_object(state, run).await?).into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": run.id, "status": run.status})),
    )
        .into_response())
}

/// Answers when the run ends or waits for a human.
async fn wait_for(
    state: &Arc<ServerState>,
    run_id: &str,
    mut finished: tokio::sync::broadcast::Receiver<(String, RunStatus)>,
) -> ApiResult {
    loop {
        let done = tokio::time::timeout(Duration::from_secs(1), finished.recv()).await;
        let check = match done {
            Ok(Ok((id, status))) => id == run_id && status != RunStatus::Queued,
            // Lagged, closed or a quiet second: look at the store.
            _ => true,
        };
        if check {
            if let Some(run) = state.store.run(run_id).await? {
                let s = run.run_status();
                if s.is_final() || s == RunStatus::Waiting {
                    return Ok(Json(run_object(state, &run).await?).into_response());
                }
            }
        }
    }
}

/// The tenant's run, or 404.
async fn own_run(state: &ServerState, tenant: &Tenant, id: &str) -> Result<RunRecord, ApiError> {
    match state.store.run(id).await? {
        Some(r) if r.tenant == tenant.id() => Ok(r),
        _ => Err(ApiError::not_found(&format!("run `{id}`"))),
    }
}

pub fn rfc3339(unix: f64) -> String {
    let secs = unix.max(0.0) as u64;
    let millis = ((unix.max(0.0) - secs as f64) * 1000.0) as u64;
    let (y, m, d) = runner::civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

async fn run_object(state: &ServerState, run: &RunRecord) -> Result<Value, ApiError> {
    let nodes = state.store.nodes(&run.id).await?;
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let finished = match n.status.as_str() {
                "running" | "waiting" => None,
                _ => Some(n.at + n.duration.unwrap_or(0.0)),
            };
            json!({
                "id": n.node,
                "status": n.status,
                "started_at": rfc3339(n.at),
                "finished_at": finished.map(rfc3339),
                "error": n.error,
                "duration": n.duration,
                "stats": n.stats,
            })
        })
        .collect();
    Ok(json!({
        "id": run.id,
        "recipe": run.recipe,
        "status": run.status,
        "created_at": rfc3339(run.started_at),
        "started_at": run.began_at.map(rfc3339),
        "finished_at": run.finished_at.map(rfc3339),
        "inputs": run.inputs,
        "outputs": run.outputs,
        "error": run.failure.as_ref().map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
            .or_else(|| run.error.as_ref().map(|e| json!({"kind": "internal", "message": e}))),
        "nodes": nodes,
        "metrics": run.metrics,
        "plan": run_plan(run),
    }))
}

/// The run's graph for the web page, from its stored recipe source; null
/// when that recipe can no longer be read.
fn run_plan(run: &RunRecord) -> Value {
    RecipeSource::of_record(run)
        .and_then(|source| source.load().ok())
        .and_then(|recipe| crate::engine::plan::Plan::build(recipe).ok())
        .map(|plan| crate::recipe::graph::plan_json(&plan))
        .unwrap_or(Value::Null)
}

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_runs(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    if let Some(s) = &q.status {
        if RunStatus::parse(s).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown status `{s}` (known: queued, running, waiting, succeeded, failed, cancelled)"
            )));
        }
    }
    let runs = state
        .store
        .runs(RunFilter {
            tenant: Some(tenant.id().to_string()),
            status: q.status.clone(),
            limit: Some(q.limit.unwrap_or(50).min(1000)),
            ..Default::default()
        })
        .await?;
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "recipe": r.recipe,
                "status": r.status,
                "created_at": rfc3339(r.started_at),
                "started_at": r.began_at.map(rfc3339),
                "finished_at": r.finished_at.map(rfc3339),
                "error": r.failure,
            })
        })
        .collect();
    Ok(Json(json!({"runs": runs})).into_response())
}

async fn get_run(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let run = own_run(&state, &tenant, &id).await?;
    Ok(Json(run_object(&state, &run).await?).into_response())
}

async fn cancel_run(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let run = own_run(&state, &tenant, &id).await?;
    let status = run.run_status();
    if status.is_final() {
        return Err(ApiError::conflict(format!(
            "run `{id}` has already ended ({})",
            status.as_str()
        )));
    }
    let token = state.active.lock().ok().and_then(|a| a.get(&id).cloned());
    match token {
        // Executing here: running nodes are cancelled and recorded.
        Some(t) => t.cancel(),
        None => {
            state.queue.remove(&id).await?;
            state.store.set_status(&id, RunStatus::Cancelled).await?;
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "cancelled"})),
    )
        .into_response())
}

async fn reply(
    State(state): Shared,
    headers: HeaderMap,
    Path((id, node)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let run = own_run(&state, &tenant, &id).await?;
    let body = json_body(body)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("a reply must be a JSON mapping"));
    }
    let waiting = state
        .store
        .nodes(&id)
        .await?
        .into_iter()
        .any(|n| n.node == node && n.status == "waiting");
    if run.run_status() != RunStatus::Waiting || !waiting {
        return Err(ApiError::conflict(format!(
            "node `{node}` of run `{id}` is not waiting for a reply"
        )));
    }
    // The node's required fields, from its waiting event.
    let events = state.store.events_after(&id, 0).await?;
    let required: Vec<String> = events
        .iter()
        .rev()
        .find(|e| e.event["event"] == "node_waiting" && e.event["node"] == node.as_str())
        .and_then(|e| e.event["required_fields"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = required
        .iter()
        .filter(|f| body.get(f.as_str()).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_reply",
            format!(
                "the reply lacks required field(s) {}",
                missing
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with("missing", json!(missing)));
    }
    state.store.add_reply(&id, &node, &body).await?;
    state.store.set_status(&id, RunStatus::Queued).await?;
    state.queue.enqueue(&id, tenant.id()).await?;
    state.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "queued"})),
    )
        .into_response())
}

// ---------------------------------------------------------------- events

async fn events(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    own_run(&state, &tenant, &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(256);
    tokio::spawn(stream_events(state.clone(), id, after, tx));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn sse(e: &LiveEvent) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.clone())
        .data(e.data.as_ref())
}

/// Past events from the store, then the live ones of an attempt running
/// here; closes after the run's last event. Every event goes out once, in
/// sequence order.
async fn stream_events(
    state: Arc<ServerState>,
    run_id: String,
    mut last: u64,
    tx: tokio::sync::mpsc::Sender<Result<SseEvent, std::convert::Infallible>>,
) {
    let mut changes = state.changes();
    macro_rules! send {
        ($e:expr) => {{
            let e: &LiveEvent = $e;
            if e.seq > last {
                if tx.send(Ok(sse(e))).await.is_err() {
                    return;
                }
                last = e.seq;
            }
        }};
    }
    loop {
        if let Some((past, mut rx)) = state.hub.subscribe(&run_id, last) {
            let first_live = past.first().map(|e| e.seq).unwrap_or(u64::MAX);
            let Ok(stored) = state.store.events_after(&run_id, last).await else {
                return;
            };
            for e in stored.iter().filter(|e| e.seq < first_live) {
                send!(&LiveEvent::from_json(e.seq, &e.event));
            }
            for e in &past {
                send!(e);
            }
            // Until it falls behind or the attempt ends: the store has it.
            while let Ok(e) = rx.recv().await {
                send!(&e);
            }
        }
        let Ok(stored) = state.store.events_after(&run_id, last).await else {
            return;
        };
        for e in &stored {
            send!(&LiveEvent::from_json(e.seq, &e.event));
        }
        match state.store.run(&run_id).await {
            Ok(Some(r)) if r.run_status().is_final() && !state.hub.is_active(&run_id) => {
                // Anything written after our last read.
                if let Ok(rest) = state.store.events_after(&run_id, last).await {
                    for e in &rest {
                        send!(&LiveEvent::from_json(e.seq, &e.event));
                    }
                }
                return;
            }
            Ok(Some(_)) => {}
            _ => return,
        }
        if tx.is_closed() {
            return;
        }
        match changes.as_mut() {
            // Another process executes it: woken when it commits events.
            Some(rx) => events_committed(rx, &run_id, Duration::from_secs(1)).await,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Until another process announces committed events of `run_id`, or
/// `timeout` (notifications can be missed while reconnecting).
async fn events_committed(
    rx: &mut tokio::sync::broadcast::Receiver<crate::store::Change>,
    run_id: &str,
    timeout: Duration,
) {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(crate::store::Change::Events(id)) if id == run_id => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
}

// ---------------------------------------------------------------- files

async fn list_files(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let run = own_run(&state, &tenant, &id).await?;
    let files: Vec<Value> = state
        .blobs
        .run_files(&tenant.blob_scope(), &run.id)
        .into_iter()
        .map(|f| {
            json!({
                "name": f.name,
                "bytes": f.bytes,
                "content_type": content_type(std::path::Path::new(&f.name)),
            })
        })
        .collect();
    Ok(Json(json!({"files": files})).into_response())
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "json" => "application/json",
        "md" => "text/markdown; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn get_file(
    State(state): Shared,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let run = own_run(&state, &tenant, &id).await?;
    let not_found = || ApiError::not_found(&format!("file `{name}` of run `{id}`"));
    let path = state
        .blobs
        .run_file(&tenant.blob_scope(), &run.id, &name)
        .ok_or_else(not_found)?;
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    Ok(([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response())
}

#[derive(Deserialize, Default)]
struct NameQuery {
    name: Option<String>,
}

fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Stores a file for `file` inputs; answers its path inside the tenant's
/// data folder.
async fn upload_file(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let bytes = body_bytes(body, "the file", "server.max_body_bytes")?;
    let name = q.name.unwrap_or_else(|| "upload".into());
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.').to_string();
    let file = format!("{:08x}-{safe}", rand::random::<u32>());
    let dir = tenant.uploads_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    tokio::fs::write(dir.join(&file), &bytes)
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"path": format!("uploads/{file}"), "bytes": bytes.len()})),
    )
        .into_response())
}

// ---------------------------------------------------------------- plugins

async fn upload_plugin(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<NameQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let bytes = body_bytes(body, "the plugin", "server.max_plugin_bytes")?;
    let name = q.name.unwrap_or_default();
    if !plain(&name) {
        return Err(ApiError::bad_request(
            "`?name=` must be 1 to 64 letters, digits, `_` or `-`",
        ));
    }
    // A component starts with `\0asm` and the component layer (version
    // 0x0d, layer 1); a core module has layer 0.
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" || bytes[6..8] != [1, 0] {
        return Err(ApiError::unprocessable(
            "invalid_plugin",
            "the body is not a WebAssembly component (build it for wasm32-wasip2, or wrap a core module with `wasm-tools component new`)",
        ));
    }
    let dir = tenant.plugins_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    // Checked in a folder of its own (under its own name, so errors and
    // per-plugin overrides name it), so a broken upload never replaces a
    // working plugin; `describe` runs under the tenant's plugin caps.
    let check_dir = dir.join(format!(".check-{:016x}", rand::random::<u64>()));
    tokio::fs::create_dir_all(&check_dir)
        .await
        .map_err(ApiError::internal)?;
    let trial = check_dir.join(format!("{name}.wasm"));
    let checked = match tokio::fs::write(&trial, &bytes).await {
        Ok(()) => Ok(crate::plugins::catalog::describe_file_capped(
            state.app.plugin_host(),
            &trial,
            Some(&tenant.plugin_caps()),
        )
        .await),
        Err(e) => Err(ApiError::internal(e)),
    };
    let dest = dir.join(format!("{name}.wasm"));
    let kept = match checked {
        Ok(Ok((_, functions))) => tokio::fs::rename(&trial, &dest)
            .await
            .map(|()| functions)
            .map_err(ApiError::internal),
        Ok(Err(e)) => Err(ApiError::unprocessable(
            "invalid_plugin",
            format!("the plugin was refused: {e}"),
        )),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_dir_all(&check_dir).await;
    let functions = kept?;
    for w in tenant.reload_plugins(state.app.plugin_host()).await {
        tracing::warn!(tenant = %tenant.id(), warning = %w, "plugin");
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "functions": functions})),
    )
        .into_response())
}

async fn list_plugins(State(state): Shared, headers: HeaderMap) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    let mut plugins = Vec::new();
    for file in tenant.plugin_files() {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let functions = crate::plugins::catalog::describe_file(state.app.plugin_host(), &file)
            .await
            .map(|(_, f)| f)
            .unwrap_or_default();
        plugins.push(json!({"name": name, "functions": functions}));
    }
    Ok(Json(json!({"plugins": plugins})).into_response())
}

async fn delete_plugin(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let tenant = tenant_of(&state, &headers)?;
    if !plain(&name) {
        return Err(ApiError::not_found(&format!("plugin `{name}`")));
    }
    let path = tenant.plugins_dir().join(format!("{name}.wasm"));
    if tokio::fs::remove_file(&path).await.is_err() {
        return Err(ApiError::not_found(&format!("plugin `{name}`")));
    }
    tenant.reload_plugins(state.app.plugin_host()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
