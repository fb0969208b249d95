//! Each protocol's request (path, headers, body) and the parsing of its
//! reply, through whole runs: usage and cost in `NodeFinished`, speech
//! files in the run folder, multipart transcription.

use super::fake::{audio_bytes, Fake, Fault, COMPLETION_TOKENS, PROMPT_TOKENS};
use super::{
    close, providers, providers_with, run, settings, ANTHROPIC_KEY, ELEVENLABS_KEY, GOOGLE_KEY,
    GROQ_KEY, OPENAI_KEY,
};
use composer::engine::events::EventKind;
use serde_json::json;
use std::path::Path;

/// USD for the fake's usage at a price per million tokens.
fn cost(input_per_million: f64, output_per_million: f64) -> f64 {
    PROMPT_TOKENS as f64 * input_per_million / 1e6
        + COMPLETION_TOKENS as f64 * output_per_million / 1e6
}

#[tokio::test]
async fn openai_chat_sends_model_messages_sampling_and_params_and_reads_usage() {
    let fake = Fake::start();
    let ran = run(
        providers(&fake),
        r#"
name: chat
user_inputs:
  - {id: name, type: string, default: Ada}
nodes:
  - id: ask
    type: language_task
    model:
      provider: openai
      model: gpt-4o-mini
      temperature: 0.2
      top_p: 0.9
      max_tokens: 50
      timeout: 5
      params: {seed: 7, presence_penalty: 0.5}
    prompt: "Say hi to {{ name }}"
"#,
        json!({}),
    )
    .await;
    assert_eq!(ran.out("ask"), "fake answer from gpt-4o-mini");

    let r = fake.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    assert!(r
        .header("user-agent")
        .is_some_and(|t| t.starts_with("composer/")));
    assert_eq!(
        r.body_json(),
        &json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hi to Ada"}],
            "temperature": 0.2,
            "max_tokens": 50,
            "top_p": 0.9,
            "seed": 7,
            "presence_penalty": 0.5
        }),
        "no JSON mode, and client settings (timeout) stay out of the body"
    );

    let stats = ran.stats("ask");
    assert_eq!((stats.calls, stats.retries), (1, 0));
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (PROMPT_TOKENS, COMPLETION_TOKENS)
    );
    // openai/gpt-4o-mini: $0.15 in, $0.60 out per million tokens.
    let usd = stats.cost_usd.expect("gpt-4o-mini has a price");
    assert!(close(usd, cost(0.15, 0.60)), "cost {usd}");
}

#[tokio::test]
async fn openai_json_mode_asks_for_a_json_object_and_parses_the_reply() {
    let fake = Fake::start();
    fake.reply(
        "/v1/chat/completions",
        r#"{"title": "Bees", "tags": ["a", "b"]}"#,
    );
    let ran = run(
        providers(&fake),
        r#"
name: json
nodes:
  - id: plan
    type: language_task
    output_format: json
    model: {provider: openai, model: gpt-4.1-nano}
    prompt: "Plan an article as JSON"
"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ran.out("plan"),
        &json!({"title": "Bees", "tags": ["a", "b"]})
    );
    let body = fake.only_request().body_json().clone();
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body["model"], "gpt-4.1-nano");
    // No sampling settings given: none sent.
    assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
}

#[tokio::test]
async fn anthropic_messages_send_key_version_and_default_max_tokens() {
    let fake = Fake::start();
    fake.reply("claude-sonnet-4-0", r#"{"verdict": "fine"}"#);
    let ran = run(
        providers(&fake),
        r#"
name: claude
nodes:
  - id: write
    type: language_task
    model:
      provider: anthropic
      model: claude-3-5-haiku-latest
      temperature: 0.7
      params: {stop_sequences: ["END"]}
    prompt: "Write a haiku"
  - id: shaped
    type: language_task
    output_format: json
    model: {provider: anthropic, model: claude-sonnet-4-0, max_tokens: 100, top_p: 0.5}
    prompt: "Give JSON"
"#,
        json!({}),
    )
    .await;
    assert_eq!(ran.out("write"), "fake answer from claude-3-5-haiku-latest");
    assert_eq!(ran.out("shaped"), &json!({"verdict": "fine"}));
    let requests = fake.requests_to("/v1/messages");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let by_model = |m: &str| {
        requests
            .iter()
            .find(|r| r.model.as_deref() == Some(m))
            .unwrap_or_else(|| panic!("no request for {m}"))
    };

    let r = by_model("claude-3-5-haiku-latest");
    assert_eq!(r.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        r.header("authorization"),
        None,
        "the key goes in x-api-key only"
    );
    assert_eq!(
        r.body_json(),
        &json!({
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": "Write a haiku"}],
            "temperature": 0.7,
            "stop_sequences": ["END"]
        })
    );

    let r = by_model("claude-sonnet-4-0");
    let body = r.body_json();
    assert_eq!(body["max_tokens"], 100, "the model's max_tokens wins");
    assert_eq!(body["top_p"], 0.5);
    let prompt = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        prompt.starts_with("Give JSON") && prompt.contains("JSON only"),
        "no JSON mode in this API: the prompt asks for it: {prompt:?}"
    );

    let stats = ran.stats("write");
    assert_eq!(
        (stats.calls, stats.input_tokens, stats.output_tokens),
        (1, PROMPT_TOKENS, COMPLETION_TOKENS)
    );
    let usd = stats.cost_usd.expect("claude-3-5-haiku-latest has a price");
    assert!(close(usd, cost(0.80, 4.00)), "cost {usd}");
}

#[tokio::test]
async fn gemini_generate_content_sends_the_key_header_and_generation_config() {
    let fake = Fake::start();
    fake.reply("gemini-2.0-flash", r#"{"ok": true}"#);
    let ran = run(
        providers(&fake),
        r#"
name: gemini
nodes:
  - id: ask
    type: language_task
    output_format: json
    model:
      provider: google
      model: gemini-2.0-flash
      temperature: 0.3
      max_tokens: 256
      top_p: 0.8
      params:
        safetySettings: [{category: HARM_CATEGORY_HARASSMENT, threshold: BLOCK_NONE}]
    prompt: "Answer in JSON"
"#,
        json!({}),
    )
    .await;
    assert_eq!(ran.out("ask"), &json!({"ok": true}));
    let r = fake.only_request();
    assert_eq!(r.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(r.header("x-goog-api-key"), Some(GOOGLE_KEY));
    assert_eq!(r.query, None, "the key is not in the URL");
    assert_eq!(
        r.body_json(),
        &json!({
            "contents": [{"role": "user", "parts": [{"text": "Answer in JSON"}]}],
            "generationConfig": {
                "temperature": 0.3,
                "maxOutputTokens": 256,
                "topP": 0.8,
                "responseMimeType": "application/json"
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        })
    );
    let stats = ran.stats("ask");
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (PROMPT_TOKENS, COMPLETION_TOKENS)
    );
    let usd = stats.cost_usd.expect("gemini-2.0-flash has a price");
    assert!(close(usd, cost(0.10, 0.40)), "cost {usd}");
}

#[tokio::test]
async fn a_model_base_url_overrides_the_endpoint_for_compatible_servers() {
    let fake = Fake::start();
    // groq's endpoint is on the fake's host under another path: only the
    // mapping's base_url brings its calls to `/v1`. (A base_url on another
    // host is refused while a key is set: see `guards`.) Unpriced model: no
    // cost.
    let mut s = super::settings(&fake);
    let mut groq = composer::providers::settings::presets()["groq"].clone();
    groq.base_url = format!("{}/not-here", fake.url());
    s.endpoint.insert("groq".into(), groq);
    let yaml = format!(
        r#"
name: compatible
nodes:
  - id: ask
    type: language_task
    model: {{provider: groq, model: llama-3.1-8b-instant, base_url: "{}/v1/"}}
    prompt: hello
"#,
        fake.url()
    );
    let ran = run(super::providers_with(&s), &yaml, json!({})).await;
    assert_eq!(ran.out("ask"), "fake answer from llama-3.1-8b-instant");
    let r = fake.only_request();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {GROQ_KEY}").as_str())
    );
    assert!(r.body_json().get("base_url").is_none());
    assert_eq!(ran.stats("ask").cost_usd, None);
}

/// The file a speech node wrote: in the run folder, named after the node.
fn spoken(ran: &super::Ran, node: &str, ext: &str) -> Vec<u8> {
    let path = ran.out(node).as_str().expect("a path").to_string();
    let path = Path::new(&path);
    assert_eq!(
        path.extension().and_then(|e| e.to_str()),
        Some(ext),
        "{path:?}"
    );
    assert_eq!(path.parent(), Some(ran.outcome.out_dir.as_path()));
    assert!(path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(node)));
    std::fs::read(path).expect("the audio file exists")
}

#[tokio::test]
async fn openai_speech_writes_the_audio_with_the_format_extension() {
    let fake = Fake::start();
    let ran = run(
        providers(&fake),
        r#"
name: speech
nodes:
  - id: hello
    type: text_to_speech_task
    model: {provider: openai, model: gpt-4o-mini-tts}
    input: {text: "Hello there", voice: nova, response_format: wav, speed: 1.1}
  - id: plain
    type: text_to_speech_task
    model: {provider: openai, model: tts-1}
    input: {text: "Default voice"}
"#,
        json!({}),
    )
    .await;
    // (Node ids are not format names: an input naming a node reads its output.)
    assert_eq!(spoken(&ran, "hello", "wav"), audio_bytes("wav"));
    assert_eq!(spoken(&ran, "plain", "mp3"), audio_bytes("mp3"));

    let requests = fake.requests_to("/v1/audio/speech");
    assert_eq!(requests.len(), 2);
    let find = |m: &str| {
        requests
            .iter()
            .find(|r| r.model.as_deref() == Some(m))
            .unwrap()
    };
    let r = find("gpt-4o-mini-tts");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(
        r.body_json(),
        &json!({
            "model": "gpt-4o-mini-tts",
            "input": "Hello there",
            "voice": "nova",
            "response_format": "wav",
            "speed": 1.1
        })
    );
    assert_eq!(
        find("tts-1").body_json(),
        &json!({"model": "tts-1", "input": "Default voice", "voice": "alloy"})
    );
}

#[tokio::test]
async fn elevenlabs_speech_sends_voice_settings_and_writes_mp3() {
    let fake = Fake::start();
    let ran = run(
        providers(&fake),
        r#"
name: eleven
nodes:
  - id: narrate
    type: text_to_speech_task
    model: {provider: elevenlabs, model: eleven_multilingual_v2}
    input:
      text: "Once upon a time"
      voice: voice123
      stability: 0.4
      similarity_boost: 0.8
      language_code: en
"#,
        json!({}),
    )
    .await;
    assert_eq!(spoken(&ran, "narrate", "mp3"), audio_bytes("mp3"));
    let r = fake.only_request();
    assert_eq!(r.path, "/v1/text-to-speech/voice123");
    assert_eq!(
        r.query_param("output_format").as_deref(),
        Some("mp3_44100_128")
    );
    assert_eq!(r.header("xi-api-key"), Some(ELEVENLABS_KEY));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.body_json(),
        &json!({
            "text": "Once upon a time",
            "model_id": "eleven_multilingual_v2",
            "language_code": "en",
            "voice_settings": {"stability": 0.4, "similarity_boost": 0.8}
        })
    );
}

#[tokio::test]
async fn transcription_sends_multipart_and_returns_the_text() {
    let fake = Fake::start();
    let dir = super::temp_dir();
    let audio = dir.path().join("clip.mp3");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    std::fs::write(&audio, &bytes).unwrap();
    let ran = run(
        providers(&fake),
        r#"
name: transcribe
user_inputs:
  - {id: audio, type: file}
nodes:
  - id: as_json
    type: speech_to_text_task
    model: {provider: openai, model: whisper-1}
    language: en
    response_format: json
    input: {audio_file: audio}
  - id: as_text
    type: speech_to_text_task
    model: {provider: openai, model: gpt-4o-transcribe}
    response_format: text
    input: {audio_file: audio}
"#,
        json!({"audio": audio.display().to_string()}),
    )
    .await;
    assert_eq!(ran.out("as_json"), "transcript of clip.mp3 (3000 bytes)");
    assert_eq!(ran.out("as_text"), "transcript of clip.mp3 (3000 bytes)");

    let requests = fake.requests_to("/v1/audio/transcriptions");
    assert_eq!(requests.len(), 2);
    let r = requests
        .iter()
        .find(|r| r.model.as_deref() == Some("whisper-1"))
        .unwrap();
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("multipart/form-data; boundary=")));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    let file = r.field("file").expect("a file field");
    assert_eq!(file.file_name.as_deref(), Some("clip.mp3"));
    assert_eq!(file.bytes.as_ref(), bytes.as_slice());
    let text = |name: &str| r.field(name).map(|f| f.text());
    assert_eq!(text("model").as_deref(), Some("whisper-1"));
    assert_eq!(text("language").as_deref(), Some("en"));
    assert_eq!(text("response_format").as_deref(), Some("json"));

    let r = requests
        .iter()
        .find(|r| r.model.as_deref() == Some("gpt-4o-transcribe"))
        .unwrap();
    assert_eq!(r.field("language").map(|f| f.text()), None);
    assert_eq!(
        r.field("response_format").map(|f| f.text()).as_deref(),
        Some("text")
    );
}

#[tokio::test]
async fn a_missing_reply_field_is_a_malformed_reply() {
    // Every retry sees the same unusable answer: the call fails, naming it.
    let fake = Fake::start();
    fake.always(
        "/v1/chat/completions",
        Fault::with_body(200, r#"{"choices": []}"#),
    );
    let mut s = settings(&fake);
    s.retry.max_retries = 1;
    let ran = run(
        providers_with(&s),
        r#"
name: empty
nodes:
  - id: ask
    type: language_task
    model: {provider: openai, model: gpt-4o-mini}
    prompt: hi
"#,
        json!({}),
    )
    .await;
    let error = ran.error();
    assert!(
        error.contains("malformed") && error.contains("after 2 attempts"),
        "{error}"
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn replies_are_read_whatever_else_they_hold() {
    // Anthropic: the text blocks joined, other blocks left out.
    let fake = Fake::start();
    fake.script(
        "/v1/messages",
        [Fault::with_body(
            200,
            r#"{"type": "message", "content": [
                {"type": "text", "text": "Hello, "},
                {"type": "tool_use", "id": "t1", "name": "x", "input": {}},
                {"type": "text", "text": "world"}],
              "usage": {"input_tokens": 7, "output_tokens": 3}}"#,
        )],
    );
    // Gemini: a blocked prompt is an answer, not a failure to retry.
    const GEMINI: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
    fake.script(
        GEMINI,
        [Fault::with_body(
            200,
            r#"{"promptFeedback": {"blockReason": "SAFETY"}}"#,
        )],
    );
    let ran = run(
        providers(&fake),
        r#"
name: replies
nodes:
  - id: claude
    type: language_task
    model: {provider: anthropic, model: claude-3-5-haiku-latest}
    prompt: hi
  - id: gemini
    type: language_task
    model: {provider: google, model: gemini-2.5-flash}
    prompt: hi
    on_error: continue
"#,
        json!({}),
    )
    .await;
    assert_eq!(ran.out("claude"), "Hello, world");
    let stats = ran.stats("claude");
    assert_eq!((stats.input_tokens, stats.output_tokens), (7, 3));

    let failed: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeFailed { node, error, .. } if node == "gemini" => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{}", ran.describe());
    assert!(failed[0].contains("reason: SAFETY"), "{}", failed[0]);
    assert!(
        !failed[0].contains("attempts"),
        "not retried: {}",
        failed[0]
    );
    assert_eq!(fake.requests_to(GEMINI).len(), 1);
}
