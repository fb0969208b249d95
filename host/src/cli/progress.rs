//! Showing a run's events: live progress bars on a terminal (indicatif),
//! one log line per event elsewhere (CI logs, pipes).

use crate::engine::events::{Event, EventKind, EventSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Live progress: one line per running node with its elapsed time, map
/// items done/total; finished, skipped and failed nodes are printed above.
pub struct TerminalProgress {
    bars: MultiProgress,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        TerminalProgress {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` with the bars hidden (to ask a human, for instance).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bars.suspend(f)
    }

    fn line(&self, text: String) {
        let _ = self.bars.println(text);
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn map_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl EventSink for TerminalProgress {
    fn emit(&self, event: Event) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        match event.kind {
            EventKind::NodeStarted { node, node_type } => {
                let bar = self.bars.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_message(format!("{node} ({node_type})"));
                bar.enable_steady_tick(Duration::from_millis(120));
                running.insert(node, bar);
            }
            EventKind::MapItem { .. } => {}
            EventKind::NodeWaiting { node, .. } => {
                if let Some(bar) = running.remove(&node) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                self.line(format!("… {node} waits for a human reply"));
            }
            EventKind::MapProgress {
                node,
                done,
                failed,
                total,
            } => {
                if let Some(bar) = running.get(&node) {
                    if bar.length() != Some(total as u64) {
                        bar.set_style(map_style());
                        bar.set_length(total as u64);
                    }
                    bar.set_position(done as u64);
                    if failed > 0 {
                        bar.set_message(format!("{node} ({failed} failed)"));
                    }
                }
            }
            EventKind::NodeFinished {
                node,
                duration,
                mock,
                stats,
                cached,
                ..
            } => {
                if let Some(bar) = running.remove(&node) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                let mark = match (cached, mock) {
                    (true, _) => " [cached]",
                    (false, true) => " [mock]",
                    _ => "",
                };
                self.line(format!(
                    "✓ {node} {:.2}s{mark}{}",
                    duration.as_secs_f64(),
                    stats_suffix(&stats)
                ));
            }
            EventKind::NodeSkipped { node } => self.line(format!("- {node} skipped")),
            EventKind::NodeFailed {
                node,
                error,
                continued,
                ..
            } => {
                if let Some(bar) = running.remove(&node) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                let how = if continued { " (continuing)" } else { "" };
                self.line(format!("✗ {node}{how}: {error}"));
            }
            EventKind::NodeCancelled { node } => {
                if let Some(bar) = running.remove(&node) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                self.line(format!("⊘ {node} cancelled"));
            }
            EventKind::Provider { node, note } => {
                self.line(format!("  {node}: {}", describe_note(&note)))
            }
            EventKind::PluginHttp { node, request } => {
                if request.refused || request.error.is_some() {
                    self.line(format!("  {node}: {}", describe_http(&request)));
                }
            }
            EventKind::NodeProgress { node, done, total } => {
                if let Some(bar) = running.get(&node) {
                    if bar.length() != Some(total) {
                        bar.set_style(map_style());
                        bar.set_length(total);
                    }
                    bar.set_position(done);
                }
            }
            EventKind::LoopIteration { nodes, iteration } => {
                self.line(format!("↻ loop {} pass {iteration}", nodes.join(", ")));
            }
            EventKind::Log {
                node,
                level,
                message,
            } => self.line(format!("  {node} {level}: {message}")),
            EventKind::RunStarted { .. } | EventKind::RunFinished { .. } => {}
        }
    }
}

/// One line per event on stderr, with the time since the run started.
pub struct LogLines;

impl EventSink for LogLines {
    fn emit(&self, event: Event) {
        let at = event.at.as_secs_f64();
        let text = match event.kind {
            EventKind::RunStarted { run_id, recipe } => format!("run {run_id} started: {recipe}"),
            EventKind::NodeStarted { node, node_type } => format!("{node} started ({node_type})"),
            EventKind::NodeFinished {
                node,
                duration,
                mock,
                stats,
                cached,
                ..
            } => format!(
                "{node} finished in {:.3}s{}{}",
                duration.as_secs_f64(),
                match (cached, mock) {
                    (true, _) => " [cached]",
                    (false, true) => " [mock]",
                    _ => "",
                },
                stats_suffix(&stats)
            ),
            EventKind::NodeSkipped { node } => format!("{node} skipped"),
            EventKind::NodeFailed {
                node,
                error,
                continued,
                ..
            } => {
                format!(
                    "{node} failed{}: {error}",
                    if continued { " (continuing)" } else { "" }
                )
            }
            EventKind::NodeCancelled { node } => format!("{node} cancelled"),
            EventKind::MapItem { .. } => return,
            EventKind::NodeWaiting { node, .. } => format!("{node} waits for a human reply"),
            EventKind::MapProgress {
                node,
                done,
                failed,
                total,
            } => {
                // Every item would flood a log; a line per tenth is enough.
                let step = (total / 10).max(1);
                if done != total && done % step != 0 {
                    return;
                }
                format!("{node} items {done}/{total} ({failed} failed)")
            }
            EventKind::Provider { node, note } => format!("{node} {}", describe_note(&note)),
            EventKind::PluginHttp { node, request } => {
                format!("{node} {}", describe_http(&request))
            }
            EventKind::NodeProgress { node, done, total } => {
                let step = (total / 10).max(1);
                if done != total && !done.is_multiple_of(step) {
                    return;
                }
                format!("{node} progress {done}/{total}")
            }
            EventKind::LoopIteration { nodes, iteration } => {
                format!("loop {} pass {iteration}", nodes.join(", "))
            }
            EventKind::Log {
                node,
                level,
                message,
            } => format!("{node} {level}: {message}"),
            EventKind::RunFinished {
                duration, status, ..
            } => format!("run {} in {:.3}s", status.as_str(), duration.as_secs_f64()),
        };
        let _ = writeln!(std::io::stderr().lock(), "[{at:8.3}s] {text}");
    }
}

/// One line for a provider call note.
fn describe_note(note: &crate::providers::CallNote) -> String {
    use crate::providers::CallNote;
    match note {
        CallNote::RateLimitWait {
            provider,
            waited_ms,
        } => format!("waited {waited_ms} ms for the {provider} rate limit"),
        CallNote::Retry {
            provider,
            attempt,
            delay_ms,
            reason,
        } => format!("{provider} attempt {attempt} failed ({reason}); retrying in {delay_ms} ms"),
        CallNote::Fallback { from, to, reason } => {
            format!("{from} failed ({reason}); falling back to {to}")
        }
    }
}

/// ` 120→45 tokens, 1 retry, $0.0012` for nodes that called a provider.
fn stats_suffix(stats: &crate::providers::CallStats) -> String {
    let mut parts = Vec::new();
    if stats.input_tokens + stats.output_tokens > 0 {
        parts.push(format!(
            "{}→{} tokens",
            stats.input_tokens, stats.output_tokens
        ));
    }
    if stats.retries > 0 {
        parts.push(format!(
            "{} retr{}",
            stats.retries,
            if stats.retries == 1 { "y" } else { "ies" }
        ));
    }
    if let Some(cost) = stats.cost_usd {
        parts.push(format!("${cost:.4}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `http GET https://x:443/path → 200, 1.2 KB in 0.120s` or the refusal.
fn describe_http(r: &crate::plugins::outbound::HttpRequestRecord) -> String {
    let outcome = match (&r.error, r.status) {
        (Some(e), _) => e.clone(),
        (None, Some(status)) => format!(
            "{status}, {} in {:.3}s",
            crate::metrics::render::bytes_text(r.response_bytes),
            r.secs
        ),
        (None, None) => "no response".to_string(),
    };
    format!("http {} {} → {outcome}", r.method, r.url)
}
