//! The `composer run --metrics` table: one line per node, slowest first,
//! then the run's summary lines.

use super::model::{NodeMetrics, RunMetrics};
use super::report::secs_text;
use std::fmt::Write as _;

/// `1.5 KB`, `12.3 MB`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1234567` → `1,234,567`.
pub fn count_text(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cost_text(cost: Option<f64>) -> String {
    cost.map_or("-".into(), |c| format!("${c:.4}"))
}

fn dash_zero(n: u64, text: impl FnOnce(u64) -> String) -> String {
    if n == 0 {
        "-".into()
    } else {
        text(n)
    }
}

fn row(n: &NodeMetrics) -> [String; 11] {
    let duration = if n.ran() {
        let mut d = secs_text(n.duration);
        if n.runs > 1 {
            let _ = write!(d, " ×{}", n.runs);
        }
        d
    } else {
        "-".into()
    };
    let cache = if !n.ran() {
        "-".to_string()
    } else if n.cache_hit {
        "hit".into()
    } else {
        "miss".into()
    };
    let mut status = n.status.as_str().to_string();
    if let Some(items) = &n.items {
        let _ = write!(status, " ({} items", items.count);
        if items.failed > 0 {
            let _ = write!(status, ", {} failed", items.failed);
        }
        status.push(')');
    }
    [
        n.node.clone(),
        n.node_type.clone(),
        status,
        duration,
        dash_zero(u64::from(n.calls), count_text),
        dash_zero(u64::from(n.retries), count_text),
        dash_zero(n.tokens(), count_text),
        cost_text(n.cost_usd),
        cache,
        dash_zero(n.plugin_fuel, count_text),
        dash_zero(n.plugin_peak_memory_bytes, bytes_text),
    ]
}

const HEADER: [&str; 11] = [
    "node", "type", "status", "duration", "calls", "retries", "tokens", "cost", "cache", "fuel",
    "memory",
];

/// Left-aligned text columns; numbers right-aligned.
const LEFT: [bool; 11] = [
    true, true, true, false, false, false, false, false, true, false, false,
];

/// The table and summary `composer run --metrics` prints.
pub fn render_table(m: &RunMetrics) -> String {
    let rows: Vec<[String; 11]> = m.slowest().into_iter().map(row).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if LEFT[i] {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        s.push_str(text.trim_end());
        s.push('\n');
    };
    line(&mut s, &HEADER.map(String::from));
    for r in &rows {
        line(&mut s, r);
    }
    s.push('\n');
    s.push_str(&summary(m));
    s
}

/// The run's summary lines.
pub fn summary(m: &RunMetrics) -> String {
    let mut s = String::new();
    let status = match m.success {
        Some(true) => "succeeded",
        Some(false) => "failed",
        None => "unfinished",
    };
    let _ = writeln!(s, "run {status} in {}", secs_text(m.wall_secs));
    if m.critical_path.nodes.is_empty() {
        let _ = writeln!(s, "critical path: -");
    } else {
        let _ = writeln!(
            s,
            "critical path: {} ({})",
            m.critical_path.nodes.join(" → "),
            secs_text(m.critical_path.total_secs)
        );
    }
    let t = &m.totals;
    let mut calls = format!(
        "provider calls: {} ({} retries",
        count_text(t.calls),
        count_text(t.retries)
    );
    if t.rate_limit_wait_ms > 0 {
        let _ = write!(
            calls,
            ", {} waiting for rate limits",
            secs_text(t.rate_limit_wait_ms as f64 / 1000.0)
        );
    }
    let _ = writeln!(
        s,
        "{calls}); tokens: {} ({} in, {} out); cost: {}",
        count_text(t.tokens),
        count_text(t.input_tokens),
        count_text(t.output_tokens),
        cost_text(t.cost_usd)
    );
    if t.plugin_calls > 0 {
        let _ = writeln!(
            s,
            "plugin calls: {} ({} fuel)",
            count_text(t.plugin_calls),
            count_text(t.plugin_fuel)
        );
    }
    if t.http_requests > 0 {
        let mut line = format!(
            "plugin HTTP requests: {} ({} sent, {} received",
            count_text(t.http_requests),
            bytes_text(t.http_bytes_sent),
            bytes_text(t.http_bytes_received)
        );
        if t.http_refused > 0 {
            let _ = write!(line, ", {} refused by the host", count_text(t.http_refused));
        }
        let _ = writeln!(s, "{line})");
    }
    let rate = m
        .cache_hit_rate
        .map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
    let _ = writeln!(
        s,
        "cache hit rate: {rate} ({} of {} nodes)",
        m.cache.hits, m.cache.eligible
    );
    let c = &m.counts;
    let _ = writeln!(
        s,
        "nodes: {} completed, {} cached, {} skipped, {} failed, {} cancelled",
        c.completed, c.cached, c.skipped, c.failed, c.cancelled
    );
    if let Some(peak) = m.peak_rss_bytes {
        let _ = writeln!(s, "peak memory (RSS): {}", bytes_text(peak));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1000), "1,000");
        assert_eq!(count_text(1_234_567), "1,234,567");
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KB");
        assert_eq!(bytes_text(3 * 1024 * 1024), "3.0 MB");
    }
}
