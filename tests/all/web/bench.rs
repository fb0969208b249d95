//! The page's weight, its time to first render, and whether the run view
//! keeps up with a 1,000-item map. Reports, does not assert; run by hand:
//! `cargo test -p composer --test all -- --ignored web::bench`. Writes its
//! figures into docs/benchmarks.md.

use super::{site, Browser};
use crate::hosting::serve::KEY_A;
use serde_json::Value;
use std::fmt::Write as _;

#[path = "../../../host/benches/common/doc.rs"]
mod doc;

const BIG_MAP: &str = r#"
name: big_map
description: a 1,000-item map, for the page's benchmark
user_inputs:
  - {id: count, type: int, default: 1000}
nodes:
  - id: items
    type: language_task
    model: {provider: mock, model: echo, reply: "{{ prompt }}"}
    prompt: "{{ range(count) | list | tojson }}"
    output_format: json
  - id: each
    type: map
    over: items
    max_concurrency: 16
    task:
      type: language_task
      model: {provider: mock, model: echo, latency_ms: [5, 25]}
      prompt: "item {{ item }}"
  - {id: tally, type: language_task, model: {provider: mock, model: echo}, prompt: "{{ each | length }} items"}
edges: [items to each, each to tally]
final_outputs: [tally]
"#;

const LOADS: usize = 5;
const MAP_RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Installs, in the page, a frame-gap meter, a long-task counter and a
/// watcher that stamps when the run's badge says `succeeded`.
const METER: &str = r#"
const m = window.__bench = { maxGap: 0, frames: 0, longTasks: 0, longTaskMs: 0, doneAt: null };
let last = performance.now();
const frame = (t) => { const g = t - last; last = t; m.frames++; if (g > m.maxGap) m.maxGap = g; if (!m.doneAt) requestAnimationFrame(frame); };
requestAnimationFrame(frame);
try { new PerformanceObserver((l) => { for (const e of l.getEntries()) { m.longTasks++; m.longTaskMs += e.duration; } }).observe({ type: 'longtask' }); } catch (e) { m.longTasks = -1; }
const badge = document.querySelector('#run-status');
new MutationObserver(() => { if (!m.doneAt && badge.textContent === 'succeeded') m.doneAt = Date.now(); })
  .observe(badge, { childList: true, characterData: true, subtree: true });
return true;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, writes docs/benchmarks.md"]
async fn bench_page_weight_and_first_render() {
    let server = site(&[("big_map.yaml", BIG_MAP)]);
    let b = Browser::start("bench", &server.base).await;

    // Page weight and first render, over cold loads (the assets are
    // `no-cache` without a validator, so every load fetches them again).
    let mut fcp = Vec::new();
    let mut dcl = Vec::new();
    let mut listed = Vec::new();
    let mut weight = Value::Null;
    for _ in 0..LOADS {
        b.client.goto("about:blank").await.unwrap();
        b.client.goto(&format!("{}/", b.base)).await.unwrap();
        let v = b
            .wait_for(
                "the first paint",
                "const nav = performance.getEntriesByType('navigation')[0]; const p = performance.getEntriesByName('first-contentful-paint')[0]; if (!p || !nav.loadEventEnd) return null; const res = performance.getEntriesByType('resource').filter((r) => r.name.includes('/assets/')); return { fcp: p.startTime, dcl: nav.domContentLoadedEventEnd, files: [['index.html', nav.transferSize, nav.encodedBodySize, nav.decodedBodySize], ...res.map((r) => [r.name.split('/').pop(), r.transferSize, r.encodedBodySize, r.decodedBodySize])] };",
                vec![],
            )
            .await;
        fcp.push(v["fcp"].as_f64().unwrap());
        dcl.push(v["dcl"].as_f64().unwrap());
        weight = v["files"].clone();
    }
    // Signed in: from navigation start to the recipe list drawn.
    b.sign_in(KEY_A).await;
    b.wait_visible("#recipe-list button.card").await;
    for _ in 0..LOADS {
        b.client.goto("about:blank").await.unwrap();
        b.client.goto(&format!("{}/", b.base)).await.unwrap();
        let v = b
            .wait_for(
                "the recipe list",
                "const m = performance.getEntriesByName('recipes-shown')[0]; return m ? m.startTime : null;",
                vec![],
            )
            .await;
        listed.push(v.as_f64().unwrap());
    }

    // The run view and a 1,000-item map's events.
    let mut lag = Vec::new();
    let mut gaps = Vec::new();
    let mut long_tasks = Vec::new();
    let mut walls = Vec::new();
    let mut events = 0;
    for _ in 0..MAP_RUNS {
        b.client
            .goto(&format!("{}/#recipe/big_map", b.base))
            .await
            .unwrap();
        b.wait_visible("#in-count").await;
        b.js(METER, vec![]).await;
        let before = b
            .js(
                "return document.querySelector('#run-id').textContent;",
                vec![],
            )
            .await;
        b.click("#run-form button[type=submit]").await;
        // The new run's view, not the last one's.
        b.wait_for(
            "the new run's view",
            "const id = document.querySelector('#run-id').textContent; return id && id !== arguments[0] && !document.querySelector('#run-view').hidden;",
            vec![before],
        )
        .await;
        b.wait_status(&["succeeded"]).await;
        b.wait_for(
            "the map node done",
            "return document.querySelector(\"#graph g.node[data-node='each']\").dataset.state === 'done';",
            vec![],
        )
        .await;
        let m = b.js("return window.__bench;", vec![]).await;
        let id = b
            .js(
                "return document.querySelector('#run-id').textContent;",
                vec![],
            )
            .await;
        let run: Value = reqwest::Client::new()
            .get(format!("{}/v1/runs/{}", b.base, id.as_str().unwrap()))
            .bearer_auth(KEY_A)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The server's clock is this machine's: the browser reads its times.
        let times = b
            .js(
                "return [...arguments].map((t) => Date.parse(t));",
                vec![run["started_at"].clone(), run["finished_at"].clone()],
            )
            .await;
        let (began, finished) = (times[0].as_f64().unwrap(), times[1].as_f64().unwrap());
        let done_at = m["doneAt"]
            .as_f64()
            .unwrap_or_else(|| panic!("the page never showed the run done: {m}"));
        lag.push(done_at - finished);
        walls.push(finished - began);
        gaps.push(m["maxGap"].as_f64().unwrap());
        long_tasks.push(m["longTaskMs"].as_f64().unwrap_or(0.0));
        let stream = reqwest::Client::new()
            .get(format!(
                "{}/v1/runs/{}/events",
                b.base,
                id.as_str().unwrap()
            ))
            .bearer_auth(KEY_A)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        events = stream.lines().filter(|l| l.starts_with("event:")).count();
    }
    b.shot("big-map").await;
    let today = b
        .js("return new Date().toISOString().slice(0, 10);", vec![])
        .await;
    b.close().await;

    let mut body = String::new();
    let _ = writeln!(
        body,
        "Measured on {}, 2 cores, headless Chromium over WebDriver, `{}` server on 127.0.0.1; medians of {LOADS} cold loads and {MAP_RUNS} map runs.\n",
        today.as_str().unwrap(),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );
    body.push_str("| what | figure |\n| --- | --- |\n");
    let mut total = 0;
    for f in weight.as_array().unwrap() {
        let decoded = f[3].as_u64().unwrap_or(0);
        total += decoded;
        let _ = writeln!(
            body,
            "| `{}` | {decoded} bytes ({} on the wire) |",
            f[0].as_str().unwrap_or("?"),
            f[1].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(
        body,
        "| page weight, HTML + JS + CSS | {total} bytes, 3 requests, no dependency |"
    );
    let _ = writeln!(
        body,
        "| first contentful paint (key form) | {:.0} ms (DOMContentLoaded {:.0} ms) |",
        median(fcp),
        median(dcl)
    );
    let _ = writeln!(
        body,
        "| signed in: navigation to the recipe list drawn | {:.0} ms |",
        median(listed)
    );
    let _ = writeln!(
        body,
        "| 1,000-item map run ({events} events streamed), server wall time | {:.0} ms |",
        median(walls)
    );
    let _ = writeln!(
        body,
        "| run finished (server) to the page showing it done | {:.0} ms |",
        median(lag)
    );
    let _ = writeln!(
        body,
        "| longest gap between frames during the run / long tasks | {:.0} ms / {:.0} ms |",
        median(gaps),
        median(long_tasks)
    );
    println!("{body}");
    doc::write_section(
        "web",
        "Web page (written by `cargo test -p composer --test all -- --ignored web::bench`)",
        &body,
    );
}
