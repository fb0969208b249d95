//! What a person does on the page: sign in, run the flagship and hear its
//! narration, a wrong key, a hitl review, a failing node.

use super::{site, Browser};
use crate::hosting::serve::{KEY_A, REVIEW};
use serde_json::json;

/// A recipe whose middle node's model fails (the mock's `fail_when`).
const FRAGILE: &str = r#"
name: fragile
description: the middle step's model fails
nodes:
  - {id: gather_facts, type: language_task, model: {provider: mock, model: echo}, prompt: "list the facts"}
  - {id: boom, type: language_task, model: {provider: mock, model: echo, fail_when: "EXPLODE"}, prompt: "now EXPLODE with {{ gather_facts }}"}
  - {id: conclude, type: language_task, model: {provider: mock, model: echo}, prompt: "conclude {{ boom }}"}
edges: [gather_facts to boom, boom to conclude]
final_outputs: [conclude]
"#;

/// Sign in, pick the flagship, fill its form, run it: every node reaches
/// `done` in the graph, the outputs show, and the narration's audio
/// element gets a source that plays (a WAV the server answers with 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flagship_runs_from_the_page_to_a_playable_narration() {
    let server = site(&[]);
    let b = Browser::start("flagship", &server.base).await;
    b.sign_in(KEY_A).await;
    b.wait_visible("#recipe-list button.card[data-recipe='article_studio']")
        .await;
    b.shot("recipes").await;

    b.click("button.card[data-recipe='article_studio']").await;
    b.wait_visible("#in-brief").await;
    // The form is generated from the recipe's inputs, with their defaults.
    let form = b
        .js(
            "return ['brief', 'audience', 'sections_wanted', 'narrate'].map((n) => { const e = document.getElementById('in-' + n); return e && [e.tagName, e.type, e.type === 'checkbox' ? e.checked : e.value]; });",
            vec![],
        )
        .await;
    assert_eq!(
        form[1],
        json!(["SELECT", "select-one", "general"]),
        "{form}"
    );
    let labels = b
        .js(
            "return [...document.querySelectorAll('#run-form label')].map((l) => l.textContent);",
            vec![],
        )
        .await;
    assert_eq!(
        labels,
        json!([
            "What the article is about",
            "audience",
            "Number of sections",
            "Narrate the summary"
        ]),
        "the recipe's labels"
    );
    assert_eq!(form[2], json!(["INPUT", "number", "4"]), "{form}");
    assert_eq!(form[3], json!(["INPUT", "checkbox", true]), "{form}");
    b.type_into("#in-brief", "How rate limits keep an API healthy")
        .await;
    b.client
        .find(fantoccini::Locator::Css("#in-audience"))
        .await
        .unwrap()
        .select_by_value("technical")
        .await
        .unwrap();
    b.shot("form").await;
    b.click("#run-form button[type=submit]").await;

    let status = b.wait_status(&["succeeded", "failed", "cancelled"]).await;
    let states = b.node_states().await;
    assert_eq!(
        status,
        "succeeded",
        "{states:?}\n{}",
        b.visible_text().await
    );
    let mut names: Vec<&str> = states.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut expected = [
        "draft_sections",
        "gather",
        "narration",
        "outline",
        "polish",
        "review",
        "summary",
        "synthesize",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(states.len(), 8, "{states:?}");
    // Every node done, and the graph's text alternative says so too.
    b.wait_for(
        "every node of the graph to be done",
        "return [...document.querySelectorAll('#graph g.node:not(.terminal)')].every((g) => g.dataset.state === 'done' && g.classList.contains('done'));",
        vec![],
    )
    .await;
    let label = b
        .js(
            "return document.querySelector('#graph svg').getAttribute('aria-label');",
            vec![],
        )
        .await;
    assert!(
        label.as_str().unwrap().contains("narration done"),
        "{label}"
    );

    // Conditions on edges are readable: no label runs out of the picture.
    let cut = b
        .js(
            "const s = document.querySelector('#graph svg'); const vb = s.viewBox.baseVal; return [...s.querySelectorAll('text.edge-label')].filter((t) => { const r = t.getBBox(); return r.x < vb.x || r.x + r.width > vb.x + vb.width; }).map((t) => t.textContent);",
            vec![],
        )
        .await;
    assert_eq!(cut, json!([]), "edge labels cut off");
    // The outputs: the title from the outline and the article as Markdown.
    b.wait_visible("#outputs article[aria-label='output title']")
        .await;
    let outputs = b
        .js(
            "return document.querySelector('#outputs').innerText;",
            vec![],
        )
        .await;
    let outputs = outputs.as_str().unwrap();
    assert!(outputs.contains("A practical guide"), "{outputs}");
    assert!(
        outputs.contains("Polish the article following these notes"),
        "the review asked for polish, and the article is the polished one: {outputs}"
    );
    assert!(outputs.contains("Download narration.wav"), "{outputs}");
    // The timeline has a bar per node.
    let bars = b
        .js(
            "return document.querySelectorAll('#timeline svg rect.bar.done').length;",
            vec![],
        )
        .await;
    assert!(bars.as_u64().unwrap() >= 8, "{bars} done bars");

    // The narration: an audio element whose blob source holds the WAV the
    // server serves, long enough to play.
    let file = b
        .wait_for(
            "the narration's audio element to get a source",
            "const a = document.querySelector('#outputs audio[data-file]'); return a && a.src.startsWith('blob:') ? a.dataset.file : null;",
            vec![],
        )
        .await;
    let file = file.as_str().unwrap().to_string();
    let duration = b
        .wait_for(
            "the audio to load its metadata",
            "const a = document.querySelector('#outputs audio[data-file]'); return a && a.readyState >= 1 && a.duration > 0 ? a.duration : null;",
            vec![],
        )
        .await;
    // The same file straight from the server, as the page fetched it.
    let run_id = b
        .js(
            "return document.querySelector('#run-id').textContent;",
            vec![],
        )
        .await;
    let run_id = run_id.as_str().unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/runs/{run_id}/files/{file}", server.base))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("audio/"), "{kind}");
    let wav = resp.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    // The page cannot read its blob back (the policy keeps `connect-src`
    // to the server), so: the element plays as long as the WAV lasts.
    let byte_rate = u32::from_le_bytes(wav[28..32].try_into().unwrap()) as f64;
    let seconds = (wav.len() - 44) as f64 / byte_rate;
    let duration = duration.as_f64().unwrap();
    assert!(
        (duration - seconds).abs() < 0.05,
        "the audio element plays {duration} s of a {seconds} s file"
    );
    b.shot("run-done").await;

    // The run view at a phone's width: one column, nothing cut off.
    b.client.set_window_size(390, 844).await.unwrap();
    let overflow = b
        .wait_for(
            "the run view to reflow to one column",
            "const g = document.querySelector('.run-grid'); return getComputedStyle(g).gridTemplateColumns.split(' ').length === 1 ? [document.documentElement.scrollWidth, window.innerWidth] : null;",
            vec![],
        )
        .await;
    assert!(
        overflow[0].as_u64() <= overflow[1].as_u64(),
        "no sideways scrolling at 390 px: {overflow}"
    );
    b.shot("run-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    // The run is listed under past runs and opens again with its states.
    b.click("#run-view a.back").await;
    b.wait_visible(&format!("#run-list a[href='#run/{run_id}']"))
        .await;
    let listed = b
        .js(
            "return document.querySelector(`#run-list a[href='#run/${arguments[0]}'] .badge`).textContent;",
            vec![json!(run_id)],
        )
        .await;
    assert_eq!(listed, "succeeded");
    b.shot("past-runs").await;
    // The graph drawn before, marked, so the reopened view's is told apart.
    b.js(
        "document.querySelector('#graph svg').dataset.old = '1'; return true;",
        vec![],
    )
    .await;
    b.click(&format!("#run-list a[href='#run/{run_id}']")).await;
    b.wait_status(&["succeeded"]).await;
    b.wait_for(
        "the reopened run's nodes to be done",
        "const s = document.querySelector('#graph svg:not([data-old])'); const n = s ? [...s.querySelectorAll('g.node:not(.terminal)')] : []; return n.length === 8 && n.every((g) => g.dataset.state === 'done');",
        vec![],
    )
    .await;
    b.close().await;
}

/// A key the server does not know: the key form says so and the page
/// stays on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_on_the_page() {
    let server = site(&[]);
    let b = Browser::start("wrong-key", &server.base).await;
    b.sign_in("ck_not_a_key_of_this_server").await;
    let error = b
        .wait_for(
            "the key form's error",
            "return document.querySelector('#key-error').textContent;",
            vec![],
        )
        .await;
    assert_eq!(error, "That key was not accepted.");
    let shown = b
        .js(
            "return [...document.querySelectorAll('main > section')].filter((s) => !s.hidden).map((s) => s.id);",
            vec![],
        )
        .await;
    assert_eq!(shown, json!(["key-view"]));
    assert_eq!(
        b.js("return sessionStorage.getItem('composer.key');", vec![])
            .await,
        json!(null),
        "a refused key is not kept"
    );
    b.shot("refused").await;
    // The right key then works.
    b.sign_in(KEY_A).await;
    b.wait_visible("#recipe-list button.card").await;
    b.close().await;
}

/// A hitl node: the page shows its form with what it reviews, and the run
/// finishes after the form is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hitl_review_is_answered_on_the_page() {
    let server = site(&[("review.yaml", REVIEW)]);
    let b = Browser::start("hitl", &server.base).await;
    b.sign_in(KEY_A).await;
    b.click("button.card[data-recipe='review']").await;
    b.click("#run-form button[type=submit]").await;

    b.wait_visible("#hitl-form input[name='approved']").await;
    assert_eq!(b.wait_status(&["waiting"]).await, "waiting");
    let form = b
        .js("return document.querySelector('#hitl').innerText;", vec![])
        .await;
    let form = form.as_str().unwrap();
    assert!(form.contains("approve is waiting for you"), "{form}");
    assert!(form.contains("draft"), "what it reviews is shown: {form}");
    let states = b.node_states().await;
    assert!(
        states.contains(&("approve".into(), "waiting".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("publish".into(), "pending".into())),
        "{states:?}"
    );
    b.shot("waiting").await;

    b.type_into("#hitl-form input[name='approved']", "true")
        .await;
    b.click("#hitl-form button[type=submit]").await;
    assert_eq!(b.wait_status(&["succeeded", "failed"]).await, "succeeded");
    b.wait_for(
        "every node to be done",
        "return [...document.querySelectorAll('#graph g.node:not(.terminal)')].every((g) => g.dataset.state === 'done');",
        vec![],
    )
    .await;
    assert!(
        b.js("return document.querySelector('#hitl').hidden;", vec![])
            .await
            .as_bool()
            .unwrap(),
        "the form is gone"
    );
    let out = b
        .wait_for(
            "the published output",
            "const o = document.querySelector(\"#outputs article[aria-label='output publish'] .markdown\"); return o && o.textContent;",
            vec![],
        )
        .await;
    assert_eq!(out, "published True");
    b.shot("answered").await;
    b.close().await;
}

/// A node whose model fails is shown failed, with its error in words, and
/// the run as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_is_shown_failed_with_its_error() {
    let server = site(&[("fragile.yaml", FRAGILE)]);
    let b = Browser::start("failing-node", &server.base).await;
    b.sign_in(KEY_A).await;
    b.click("button.card[data-recipe='fragile']").await;
    b.click("#run-form button[type=submit]").await;

    assert_eq!(
        b.wait_status(&["succeeded", "failed", "cancelled"]).await,
        "failed"
    );
    let states = b.node_states().await;
    assert!(
        states.contains(&("gather_facts".into(), "done".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("boom".into(), "failed".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("conclude".into(), "not-run".into())),
        "the node after it never ran, and is not left pending: {states:?}"
    );
    // The failed node's error, in words on the page, not only in a tooltip.
    let error = b
        .wait_for(
            "the failed node's error",
            "const li = document.querySelector(\"#node-errors li[data-node='boom']\"); return li && li.getClientRects().length ? li.innerText : null;",
            vec![],
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("injected failure: input contains `EXPLODE`"),
        "{error}"
    );
    assert!(error.starts_with("boom failed"), "{error}");
    let run_error = b
        .js(
            "return document.querySelector('#run-error').textContent;",
            vec![],
        )
        .await;
    assert!(
        run_error.as_str().unwrap().contains("boom"),
        "the run's error names the node: {run_error}"
    );
    let sub = b
        .js(
            "return document.querySelector(\"#graph g.node[data-node='boom'] text.sub\").textContent;",
            vec![],
        )
        .await;
    assert!(sub.as_str().unwrap().contains("provider"), "{sub}");
    b.shot("failed").await;
    b.close().await;
}
