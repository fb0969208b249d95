//! The Wasmtime runtime for plugins: one engine per process (made on first
//! use), compiled code cached on disk by content hash and engine settings,
//! components pre-linked (`InstancePre`), the pooling allocator, and a fresh
//! store and instance for every call so nothing leaks between calls.
//!
//! CPU is bounded twice: fuel (which also yields to the async scheduler
//! every `YIELD_FUEL` units, so a busy plugin never stalls other nodes) and
//! an epoch deadline; a timeout around the whole call also counts time the
//! guest spends waiting in host calls.

use super::bindings::{FunctionInfo, Level, Plugin, PluginPre};
use super::error::PluginError;
use super::limits::{CallLimiter, LimitHit, PluginLimits};
use super::outbound::{
    AllowList, HttpObserver, HttpPolicy, HttpRequestRecord, OutboundHooks, OutboundLog,
    OutboundProblem,
};
use super::sandbox::{self, Capture, Grant, OpenGrants};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Slots whose memory is decommitted in one batch of system calls.
const DECOMMIT_BATCH: usize = 8;
/// Bytes of a slot's memory (and tables) reset in place rather than
/// unmapped, when the kernel can tell which pages were written.
const KEEP_RESIDENT: usize = 4 << 20;

/// How often the epoch advances: the granularity of wall-clock deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Fuel between cooperative yields (tens of microseconds of guest work).
const YIELD_FUEL: u64 = 200_000;

/// Process-wide plugin settings the engine is built from.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Calls running at once (pool slots); more calls wait for a slot.
    pub max_instances: u32,
    /// The largest memory any plugin may use (sizes the pool's slots).
    pub max_memory_bytes: u64,
    /// The largest table any plugin may use.
    pub max_table_elements: u64,
    /// Where compiled code is cached (None: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Write a guest profile of every call here (`--profile-plugins`).
    pub profile_dir: Option<PathBuf>,
    /// Reset a finished instance's memory in place where the kernel can
    /// tell which pages it wrote (Linux 6.7+); false: unmap it, as before
    /// (benchmarks compare the two).
    pub reset_in_place: bool,
}

/// A log line a call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// The result of one successful call, with what it cost.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub output: serde_json::Value,
    pub fuel_used: u64,
    pub peak_memory_bytes: u64,
    pub logs: Vec<LogLine>,
    pub stdout: String,
    pub stderr: String,
    /// The outbound HTTP requests it made.
    pub http_requests: Vec<HttpRequestRecord>,
    /// The last request the host refused or cut (its URL), and why.
    pub http_problem: Option<(String, OutboundProblem)>,
}

/// Progress reports from a call (`done`, `total`).
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Everything one call may use besides its input: the per-call plugin
/// settings. `PluginHost::call_settings` computes them from config (and, in
/// hosted mode, from the run's own overrides).
#[derive(Clone, Default)]
pub struct CallSettings {
    pub limits: PluginLimits,
    /// Folders, at the same path inside as outside.
    pub grants: Vec<Grant>,
    /// The run's folders opened once for all its calls (None: per call).
    pub opened: Option<Arc<OpenGrants>>,
    /// The variables the guest sees (its `secrets` and `env`), and no other.
    pub env: Vec<(String, String)>,
    /// Where its HTTP requests may go; None: nowhere.
    pub http: Option<HttpPolicy>,
    pub progress: Option<ProgressFn>,
    /// Told of each outbound request when it ends.
    pub on_http: Option<HttpObserver>,
}

impl CallSettings {
    /// Only these limits: no folder, variable or host.
    pub fn with_limits(limits: &PluginLimits) -> CallSettings {
        CallSettings {
            limits: limits.clone(),
            ..CallSettings::default()
        }
    }

    /// The HTTP policy, or one that allows nothing.
    fn http_policy(&self, plugin: &str) -> HttpPolicy {
        self.http.clone().unwrap_or_else(|| HttpPolicy {
            plugin: plugin.to_string(),
            allowed: AllowList::default(),
            allow_private_addresses: false,
            max_requests: self.limits.max_http_requests,
            max_request_bytes: self.limits.max_http_request_bytes,
            max_response_bytes: self.limits.max_http_response_bytes,
            request_timeout: Duration::from_millis(self.limits.http_timeout_ms),
        })
    }
}

/// Per-store data: WASI, the limiter, captured logs.
pub struct PluginState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    table: ResourceTable,
    limiter: CallLimiter,
    logs: Vec<LogLine>,
    log_bytes: usize,
    max_log_bytes: usize,
    logs_dropped: u64,
    progress: Option<ProgressFn>,
    /// Samples the guest's stack at every epoch tick when profiling.
    profiler: Option<wasmtime::GuestProfiler>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl super::bindings::composer::plugin::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_bytes + message.len() > self.max_log_bytes {
            self.logs_dropped += 1;
            return;
        }
        self.log_bytes += message.len();
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.push(LogLine { level, message });
    }

    fn progress(&mut self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(done, total);
        }
    }
}

/// A component ready to instantiate.
pub struct LoadedComponent {
    pub name: String,
    /// SHA-256 of the component's bytes, hex.
    pub hash: String,
    pub size: u64,
    pub component: Component,
    pre: PluginPre<PluginState>,
}

pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    settings: RuntimeSettings,
    slots: Arc<Semaphore>,
    ticker_stop: Arc<AtomicBool>,
    /// Numbers profile files.
    profiles_written: std::sync::atomic::AtomicU64,
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// SHA-256 of bytes, as hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl PluginRuntime {
    pub fn new(settings: RuntimeSettings) -> Result<PluginRuntime, String> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        let slots = settings.max_instances.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(16)) // a Python component has 14
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .max_core_instances_per_component(64)
            .max_memory_size(usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX))
            .table_elements(usize::try_from(settings.max_table_elements).unwrap_or(usize::MAX))
            // A slot's memory and tables are zeroed when its instance ends;
            // batching those decommits costs fewer system calls, and a slot
            // is never handed out again before it is clean.
            .decommit_batch_size(DECOMMIT_BATCH);
        if settings.reset_in_place && PoolingAllocationConfig::is_pagemap_scan_available() {
            // Linux 6.7+ tells which pages a finished instance wrote: the
            // slot is reset by restoring only those (to zero, or to the
            // module's initial image), up to `KEEP_RESIDENT` bytes, instead
            // of unmapping them, so the next call takes no page faults.
            // Without it, keeping memory resident would mean clearing all
            // of it on every call: the slots are unmapped as before.
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| format!("cannot start the WebAssembly engine: {e}"))?;

        let mut linker: Linker<PluginState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        // Outbound HTTP only (a plugin serves no requests); every request
        // passes the call's policy (`outbound`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| format!("cannot link WASI HTTP: {e}"))?;
        Plugin::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the host interface: {e}"))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("composer-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;

        Ok(PluginRuntime {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(slots as usize)),
            settings,
            ticker_stop,
            profiles_written: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Cache key part for the engine's settings: compiled code is only valid
    /// for the engine configuration that made it.
    fn engine_key(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    /// Loads a component from `path`, from the compiled cache when it has
    /// this exact component for this engine.
    pub fn load(&self, name: &str, path: &Path) -> Result<LoadedComponent, PluginError> {
        let load_error = |message: String| PluginError::Load {
            plugin: name.to_string(),
            message,
        };
        let bytes = std::fs::read(path)
            .map_err(|e| load_error(format!("cannot read `{}`: {e}", path.display())))?;
        let hash = content_hash(&bytes);
        let component = self.compile_cached(&bytes, &hash).map_err(load_error)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| {
                load_error(format!(
                    "it does not fit the composer plugin contract (composer:plugin/plugin): {e:#}"
                ))
            })?;
        Ok(LoadedComponent {
            name: name.to_string(),
            hash,
            size: bytes.len() as u64,
            component,
            pre,
        })
    }

    fn compile_cached(&self, bytes: &[u8], hash: &str) -> Result<Component, String> {
        let Some(dir) = &self.settings.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map_err(|e| format!("not a valid component: {e:#}"));
        };
        let file = dir.join(format!("{hash}-{}.cwasm", self.engine_key()));
        if file.is_file() {
            if let Ok(c) = deserialize_cached(&self.engine, &file) {
                return Ok(c);
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| format!("not a valid component: {e:#}"))?;
        // Written to a temporary name and renamed, so a reader never sees a
        // half-written file; a cache that cannot be written is only slower.
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &compiled)?;
            std::fs::rename(&tmp, &file)
        });
        match written {
            Ok(()) => deserialize_cached(&self.engine, &file),
            Err(_) => Component::new(&self.engine, bytes)
                .map_err(|e| format!("not a valid component: {e:#}")),
        }
    }

    /// The functions a component offers (one fresh instance).
    pub async fn describe(
        &self,
        loaded: &LoadedComponent,
        limits: &PluginLimits,
    ) -> Result<Vec<FunctionInfo>, PluginError> {
        let settings = CallSettings::with_limits(limits);
        let (result, _) = self
            .with_instance(loaded, "describe", &settings, |plugin, store| {
                Box::pin(async move { plugin.call_describe(store).await })
            })
            .await?;
        Ok(result)
    }

    /// Calls `function` with `input` (JSON text) in a fresh instance, with
    /// these limits and folders and no variable or host.
    pub async fn call(
        &self,
        loaded: &LoadedComponent,
        function: &str,
        input: &str,
        limits: &PluginLimits,
        grants: &[Grant],
        progress: Option<ProgressFn>,
    ) -> Result<CallOutcome, PluginError> {
        let settings = CallSettings {
            grants: grants.to_vec(),
            progress,
            ..CallSettings::with_limits(limits)
        };
        self.call_with(loaded, function, input, &settings).await
    }

    /// Calls `function` with `input` (JSON text) in a fresh instance.
    pub async fn call_with(
        &self,
        loaded: &LoadedComponent,
        function: &str,
        input: &str,
        settings: &CallSettings,
    ) -> Result<CallOutcome, PluginError> {
        let limits = &settings.limits;
        let fname = function.to_string();
        let input = input.to_string();
        let (result, mut outcome) = self
            .with_instance(loaded, function, settings, move |plugin, store| {
                Box::pin(async move { plugin.call_call(store, &fname, &input).await })
            })
            .await?;
        let text = result.map_err(|message| match outcome.http_problem.take() {
            // The guest failed after the host refused one of its requests:
            // say what the host did, whatever the guest made of it.
            Some((url, problem)) => PluginError::Outbound {
                plugin: loaded.name.clone(),
                function: function.to_string(),
                url,
                problem,
                detail: message,
            },
            None => PluginError::Failed {
                plugin: loaded.name.clone(),
                function: function.to_string(),
                message,
            },
        })?;
        if text.len() as u64 > limits.max_output_bytes {
            return Err(PluginError::OutputTooLarge {
                plugin: loaded.name.clone(),
                function: function.to_string(),
                bytes: text.len() as u64,
                limit_bytes: limits.max_output_bytes,
            });
        }
        outcome.output = serde_json::from_str(&text).map_err(|e| PluginError::InvalidOutput {
            plugin: loaded.name.clone(),
            function: function.to_string(),
            message: e.to_string(),
        })?;
        Ok(outcome)
    }

    /// Makes a store with this call's limits and sandbox, instantiates,
    /// runs `f`, and classifies any failure.
    async fn with_instance<R: Send + 'static>(
        &self,
        loaded: &LoadedComponent,
        function: &str,
        settings: &CallSettings,
        f: impl for<'a> FnOnce(
                &'a Plugin,
                &'a mut Store<PluginState>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
            > + Send,
    ) -> Result<(R, CallOutcome), PluginError> {
        let _slot = self.slots.acquire().await.map_err(|_| PluginError::Load {
            plugin: loaded.name.clone(),
            message: "the plugin runtime is shutting down".into(),
        })?;
        let limits = &settings.limits;
        let (mut store, stdout, stderr, outbound) = self.new_store(loaded, settings)?;
        let timeout = Duration::from_millis(limits.timeout_ms);
        let run = async {
            let plugin = loaded.pre.instantiate_async(&mut store).await?;
            f(&plugin, &mut store).await
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(profiler) = store.data_mut().profiler.take() {
                    self.write_profile(profiler, &loaded.name, function);
                }
                return Err(PluginError::Timeout {
                    plugin: loaded.name.clone(),
                    function: function.to_string(),
                    timeout_ms: limits.timeout_ms,
                });
            }
        };
        let fuel_left = store.get_fuel().unwrap_or(0);
        if let Some(profiler) = store.data_mut().profiler.take() {
            self.write_profile(profiler, &loaded.name, function);
        }
        let (mut stdout_text, dropped_out) = stdout.take();
        let (mut stderr_text, dropped_err) = stderr.take();
        for (text, dropped) in [
            (&mut stdout_text, dropped_out),
            (&mut stderr_text, dropped_err),
        ] {
            if dropped > 0 {
                text.push_str(&format!(
                    "\n[{dropped} more bytes dropped: over `max_log_bytes`]"
                ));
            }
        }
        let mut state = store.into_data();
        // Ends the requests whose bodies the guest left unread.
        drop(std::mem::replace(&mut state.table, ResourceTable::new()));
        let http_requests = outbound.records();
        match result {
            Ok(value) => {
                let mut logs = state.logs;
                if state.logs_dropped > 0 {
                    logs.push(LogLine {
                        level: "warn",
                        message: format!(
                            "{} log lines dropped (over `max_log_bytes`)",
                            state.logs_dropped
                        ),
                    });
                }
                Ok((
                    value,
                    CallOutcome {
                        output: serde_json::Value::Null,
                        fuel_used: limits.fuel.saturating_sub(fuel_left),
                        peak_memory_bytes: state.limiter.peak_memory as u64,
                        logs,
                        stdout: stdout_text,
                        stderr: stderr_text,
                        http_requests,
                        http_problem: outbound.problem(),
                    },
                ))
            }
            Err(e) => {
                let error = classify(e, &loaded.name, function, limits, &stderr_text);
                match (outbound.problem(), &error) {
                    (Some((url, problem)), PluginError::Trapped { reason, .. }) => {
                        Err(PluginError::Outbound {
                            plugin: loaded.name.clone(),
                            function: function.to_string(),
                            url,
                            problem,
                            detail: reason.clone(),
                        })
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Writes one call's guest profile (Firefox profiler format, opens in
    /// profiler.firefox.com). A profile that cannot be written is skipped:
    /// profiling never fails a call.
    fn write_profile(&self, profiler: wasmtime::GuestProfiler, plugin: &str, function: &str) {
        let Some(dir) = &self.settings.profile_dir else {
            return;
        };
        let n = self.profiles_written.fetch_add(1, Ordering::Relaxed);
        let file = dir.join(format!("{plugin}-{function}-{n:04}.json"));
        if std::fs::create_dir_all(dir).is_ok() {
            if let Ok(f) = std::fs::File::create(&file) {
                let _ = profiler.finish(std::io::BufWriter::new(f));
            }
        }
    }

    /// A store with one call's limits and sandbox.
    fn new_store(
        &self,
        loaded: &LoadedComponent,
        settings: &CallSettings,
    ) -> Result<(Store<PluginState>, Capture, Capture, OutboundLog), PluginError> {
        let limits = &settings.limits;
        let cap = usize::try_from(limits.max_log_bytes).unwrap_or(usize::MAX);
        let stdout = Capture::new(cap);
        let stderr = Capture::new(cap);
        let wasi = sandbox::wasi_context(
            &settings.grants,
            settings.opened.as_deref(),
            &settings.env,
            &stdout,
            &stderr,
        )
        .map_err(|message| PluginError::Sandbox {
            plugin: loaded.name.clone(),
            message,
        })?;
        let deadline = std::time::Instant::now() + Duration::from_millis(limits.timeout_ms);
        let (hooks, outbound) = OutboundHooks::new(
            settings.http_policy(&loaded.name),
            deadline,
            settings.on_http.clone(),
        );
        let progress = settings.progress.clone();
        let state = PluginState {
            wasi,
            http: WasiHttpCtx::new(),
            outbound: hooks,
            table: ResourceTable::new(),
            limiter: CallLimiter::new(limits),
            logs: Vec::new(),
            log_bytes: 0,
            max_log_bytes: cap,
            logs_dropped: 0,
            progress,
            profiler: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let internal = |e: wasmtime::Error| PluginError::Load {
            plugin: loaded.name.clone(),
            message: format!("cannot configure the call: {e}"),
        };
        store.set_fuel(limits.fuel).map_err(internal)?;
        store
            .fuel_async_yield_interval(Some(YIELD_FUEL))
            .map_err(internal)?;
        let ticks = limits.timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        if self.settings.profile_dir.is_some() {
            // Profiling: stop at every tick to sample the guest's stack, and
            // enforce the same deadline from there.
            let profiler = wasmtime::GuestProfiler::new_component(
                &self.engine,
                &loaded.name,
                EPOCH_TICK,
                loaded.component.clone(),
                [],
            )
            .map_err(internal)?;
            store.data_mut().profiler = Some(profiler);
            let deadline = std::time::Instant::now() + Duration::from_millis(limits.timeout_ms);
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |mut ctx| {
                let mut profiler = ctx.data_mut().profiler.take();
                if let Some(p) = profiler.as_mut() {
                    p.sample(&ctx, EPOCH_TICK);
                }
                ctx.data_mut().profiler = profiler;
                if std::time::Instant::now() >= deadline {
                    return Err(wasmtime::Error::new(Trap::Interrupt));
                }
                Ok(wasmtime::UpdateDeadline::Continue(1))
            });
        } else {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        Ok((store, stdout, stderr, outbound))
    }

    /// An instance kept for several calls, which then share its state. Nodes
    /// never use this (each call gets a fresh instance); it exists to
    /// measure what the fresh instance costs, and for trusted batch work.
    pub async fn open(
        &self,
        loaded: &LoadedComponent,
        limits: &PluginLimits,
    ) -> Result<OpenInstance, PluginError> {
        let (mut store, _, _, _) = self.new_store(loaded, &CallSettings::with_limits(limits))?;
        let plugin = loaded
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify(e, &loaded.name, "instantiate", limits, ""))?;
        Ok(OpenInstance {
            name: loaded.name.clone(),
            limits: limits.clone(),
            store,
            plugin,
        })
    }
}

/// See `PluginRuntime::open`.
pub struct OpenInstance {
    name: String,
    limits: PluginLimits,
    store: Store<PluginState>,
    plugin: Plugin,
}

impl OpenInstance {
    /// Calls `function`; returns its JSON text (or the guest's error).
    pub async fn call(
        &mut self,
        function: &str,
        input: &str,
    ) -> Result<Result<String, String>, PluginError> {
        self.plugin
            .call_call(&mut self.store, function, input)
            .await
            .map_err(|e| classify(e, &self.name, function, &self.limits, ""))
    }
}

/// Loads precompiled code that this process (or an earlier one with the
/// same engine) wrote into our own cache folder.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, file: &Path) -> Result<Component, String> {
    // SAFETY: wasmtime requires that the file holds code produced by
    // `precompile_component` of a compatible engine and is not modified
    // while mapped. The file name includes the engine's compatibility hash,
    // files are written under a temporary name and renamed into place, and
    // the cache folder is composer's own; a file that fails wasmtime's own
    // header and version checks is an error here and gets recompiled.
    unsafe { Component::deserialize_file(engine, file) }
        .map_err(|e| format!("cached code unusable: {e}"))
}

/// What a guest said on stderr before it trapped: a Rust panic prints
/// `thread '..' panicked at FILE:LINE:COL:` then the message, then a note
/// about backtraces (dropped here).
fn panic_message(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let mut text = lines[at].to_string();
        if let Some(next) = lines.get(at + 1) {
            text.push(' ');
            text.push_str(next);
        }
        return Some(text);
    }
    lines.last().map(|l| format!("stderr: {l}"))
}

/// Turns a failed call into the error that says what happened.
fn classify(
    e: wasmtime::Error,
    plugin: &str,
    function: &str,
    limits: &PluginLimits,
    stderr: &str,
) -> PluginError {
    let plugin = plugin.to_string();
    let function = function.to_string();
    for cause in e.chain() {
        if let Some(hit) = cause.downcast_ref::<LimitHit>() {
            return match *hit {
                LimitHit::Memory { limit, requested } => PluginError::MemoryLimit {
                    plugin,
                    function,
                    limit_bytes: limit,
                    requested_bytes: requested,
                },
                LimitHit::Table { limit } => PluginError::TableLimit {
                    plugin,
                    function,
                    limit,
                },
            };
        }
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::FuelExhausted {
            plugin,
            function,
            fuel: limits.fuel,
        },
        Some(Trap::Interrupt) => PluginError::Timeout {
            plugin,
            function,
            timeout_ms: limits.timeout_ms,
        },
        Some(trap) => {
            let mut reason = trap.to_string();
            if *trap == Trap::MemoryOutOfBounds {
                // Rust and C keep their stack in linear memory: running off
                // its end is how unbounded recursion shows up.
                reason.push_str(" (often a stack overflow from deep recursion)");
            }
            if let Some(message) = panic_message(stderr) {
                reason = format!("{reason}; {message}");
            }
            PluginError::Trapped {
                plugin,
                function,
                reason,
            }
        }
        None => PluginError::Trapped {
            plugin,
            function,
            reason: format!("{e:#}"),
        },
    }
}
