//! The sandbox: a call sees only its granted folders (no `..`, absolute
//! path or symlink escape), read-only grants stay read-only, the
//! environment is empty, and captured output is capped.

use super::{
    call_context, hostile_function, limits, plugin_error, project_services, recipe, run, Env,
};
use composer::plugins::catalog::{PluginHost, PluginSettings, WasmFunction};
use composer::plugins::{Function, Grant, PluginError};
use serde_json::{json, Value};

/// Text that only `/etc/passwd` holds.
fn passwd_marker() -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .unwrap_or_else(|| "root:".into())
}

/// Calls hostile `function` with `input` in a run whose output folder is
/// `env.out`; the call must fail with `Failed`, whose message is returned.
async fn refused(f: &WasmFunction, env: &Env, input: Value) -> String {
    let (ctx, _) = call_context(&env.out);
    let e = plugin_error(f.call(input.clone(), &ctx).await);
    let text = e.to_string();
    let message = match e {
        PluginError::Failed {
            plugin,
            function,
            message,
        } => {
            assert_eq!(plugin, "hostile");
            assert_eq!(function, f.info.name);
            message
        }
        other => panic!("{input}: expected Failed, got {other:?}"),
    };
    assert!(!message.is_empty());
    assert!(
        !text.contains(&passwd_marker()),
        "{input}: the error leaks /etc/passwd: {text}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_outside_the_granted_folders_fail() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let read = hostile_function(&host, "read_file").await;
    let (ctx, _) = call_context(&env.out);

    // A file in the run's output folder is readable (the grant works).
    std::fs::write(env.out.join("inside.txt"), "inside text").unwrap();
    let inside = env.out.join("inside.txt");
    let got = read
        .call(json!({"path": inside}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!("inside text"));

    // Symlinks inside the grant pointing at a file outside it (absolute
    // and relative), and at a folder outside it.
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, env.out.join(name)).unwrap();
    };
    link("/etc/passwd", "passwd_link");
    link("../../../../../../../../etc/passwd", "relative_link");
    link("/etc", "etc_link");
    // A symlink that stays inside the grant is followed.
    link("inside.txt", "inside_link");
    let got = read
        .call(json!({"path": env.out.join("inside_link")}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!("inside text"));
    let out = env.out.to_string_lossy().into_owned();
    let escapes = [
        "../../etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        format!("{out}/../../../../../../etc/passwd"),
        format!("{out}/passwd_link"),
        format!("{out}/relative_link"),
        format!("{out}/etc_link/passwd"),
    ];
    for path in escapes {
        let message = refused(&read, &env, json!({ "path": path })).await;
        assert!(message.contains("cannot read"), "{path}: {message}");
    }

    // Listing: the granted folder yes (links included), the root no.
    let list = hostile_function(&host, "list_dir").await;
    let listed = list
        .call(json!({ "path": env.out }), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        listed,
        json!([
            "etc_link",
            "inside.txt",
            "inside_link",
            "passwd_link",
            "relative_link"
        ])
    );
    for path in ["/", "/etc", "..", "."] {
        refused(&list, &env, json!({ "path": path })).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_grant_cannot_be_written_and_the_output_folder_can() {
    let env = Env::new();
    let shared = env.root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("existing.txt"), "shared text").unwrap();
    let host = PluginHost::new(PluginSettings {
        grants: vec![Grant {
            path: shared.clone(),
            writable: false,
        }],
        ..env.settings(vec![super::hostile_wasm()])
    });
    let write = hostile_function(&host, "write_file").await;
    let read = hostile_function(&host, "read_file").await;
    let (ctx, _) = call_context(&env.out);

    // The read-only grant is readable...
    let got = read
        .call(json!({"path": shared.join("existing.txt")}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!("shared text"));
    // ... but neither a new file nor an existing one can be written.
    for name in ["new.txt", "existing.txt"] {
        let target = shared.join(name);
        let message = refused(&write, &env, json!({"path": target, "text": "overwritten"})).await;
        assert!(message.contains("cannot write"), "{message}");
    }
    assert!(!shared.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(shared.join("existing.txt")).unwrap(),
        "shared text"
    );

    // The run's output folder is writable.
    let target = env.out.join("written.txt");
    let got = write
        .call(json!({"path": target, "text": "plugin text"}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!({"bytes": 11}));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "plugin text");

    // Nothing can be written outside every grant.
    let outside = env.root.join("outside.txt");
    refused(&write, &env, json!({"path": outside, "text": "x"})).await;
    assert!(!outside.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_is_empty() {
    let env = Env::new();
    let host = env.hostile_host(limits(|_| {}));
    let f = hostile_function(&host, "env").await;
    let (ctx, _) = call_context(&env.out);
    let got = f
        .call(json!({}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!({}));
}

/// Sum of the message lengths, and the lines mentioning dropped bytes.
fn captured(lines: &[(String, String)], stream: &str) -> (usize, Vec<String>) {
    let mine: Vec<&String> = lines
        .iter()
        .filter(|(level, _)| level == stream)
        .map(|(_, m)| m)
        .collect();
    let notes: Vec<String> = mine
        .iter()
        .filter(|m| m.contains("dropped"))
        .map(|m| m.to_string())
        .collect();
    let kept = mine
        .iter()
        .filter(|m| !m.contains("dropped"))
        .map(|m| m.len())
        .sum();
    (kept, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_flood_completes_with_its_output_capped() {
    let env = Env::new();
    let cap = 4096;
    let host = env.hostile_host(limits(|l| l.max_log_bytes = cap));
    let (services, _) = project_services(&host).await;
    let ran = run(services, recipe("stdout_flood.yaml"), json!({}), &env.out)
        .await
        .unwrap_or_else(|(e, _)| panic!("the run did not start: {}", e.0));
    assert_eq!(ran.out("flood"), &json!({"ok": true}));
    let logs = ran.logs("flood");
    // 10 MiB per stream, of which `cap` bytes are kept.
    let dropped = (10 * 1024 * 1024 - cap).to_string();
    for stream in ["stdout", "stderr"] {
        let (kept, notes) = captured(&logs, stream);
        assert!(kept > 0, "{stream}: nothing captured");
        assert!(kept <= cap as usize, "{stream}: {kept} bytes kept");
        assert_eq!(notes.len(), 1, "{stream}: {notes:?}");
        assert!(notes[0].contains(&dropped), "{stream}: {}", notes[0]);
        assert!(notes[0].contains("max_log_bytes"), "{}", notes[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_capped_with_a_warning() {
    let env = Env::new();
    let cap = 4096;
    let host = env.hostile_host(limits(|l| l.max_log_bytes = cap));
    let f = hostile_function(&host, "log_flood").await;
    let (ctx, logs) = call_context(&env.out);
    let got = f
        .call(json!({}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!({"ok": true}));
    let logs = logs.lock().unwrap().clone();
    let info: Vec<&String> = logs
        .iter()
        .filter(|(l, _)| l == "info")
        .map(|(_, m)| m)
        .collect();
    assert!(!info.is_empty());
    assert_eq!(info[0], "log line 0");
    assert!(info.iter().map(|m| m.len()).sum::<usize>() <= cap as usize);
    let warning = logs
        .iter()
        .find(|(l, m)| l == "warn" && m.contains("max_log_bytes"))
        .unwrap_or_else(|| panic!("no warning about dropped lines"));
    let expected = format!("{} log lines dropped", 100_000 - info.len());
    assert!(warning.1.contains(&expected), "{}", warning.1);
}

/// A folder of `file` inputs holding `doc.txt`.
fn inputs_folder(env: &Env) -> std::path::PathBuf {
    let inputs = env.root.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("doc.txt"), "input text").unwrap();
    inputs
}

/// A folder of `file` inputs is granted read-only to the calls of a run
/// (checked through the host directly: the run passes it as `read_grants`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_grants_are_readable_but_not_writable() {
    let env = Env::new();
    let inputs = inputs_folder(&env);
    let host = env.hostile_host(limits(|_| {}));
    let read = hostile_function(&host, "read_file").await;
    let write = hostile_function(&host, "write_file").await;
    let (mut ctx, _) = call_context(&env.out);
    ctx.read_grants = vec![inputs.clone()];
    let got = read
        .call(json!({"path": inputs.join("doc.txt")}), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, json!("input text"));
    let e = plugin_error(
        write
            .call(json!({"path": inputs.join("doc.txt"), "text": "x"}), &ctx)
            .await,
    );
    assert!(matches!(e, PluginError::Failed { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_to_string(inputs.join("doc.txt")).unwrap(),
        "input text"
    );
}

/// A run's calls share its granted folders, opened once: concurrent calls
/// write and list through the same handles without seeing each other's
/// position in a listing, and a read-only grant opened for one call stays
/// read-only for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sharing_a_runs_opened_folders_stay_independent() {
    let env = Env::new();
    let inputs = inputs_folder(&env);
    let host = env.hostile_host(limits(|_| {}));
    let write = hostile_function(&host, "write_file").await;
    let list = hostile_function(&host, "list_dir").await;
    let (mut ctx, _) = call_context(&env.out);
    ctx.read_grants = vec![inputs.clone()];
    ctx.opened = Some(std::sync::Arc::new(composer::plugins::OpenGrants::default()));

    let writes = (0..24).map(|i| {
        let (write, ctx, out) = (&write, &ctx, &env.out);
        async move {
            let path = out.join(format!("{i:02}.txt"));
            write.call(json!({"path": path, "text": "x"}), ctx).await
        }
    });
    for result in futures::future::join_all(writes).await {
        result.unwrap_or_else(|e| panic!("{e}"));
    }
    let expected: Vec<String> = (0..24).map(|i| format!("{i:02}.txt")).collect();
    let lists = (0..24).map(|_| list.call(json!({ "path": env.out }), &ctx));
    for listed in futures::future::join_all(lists).await {
        assert_eq!(listed.unwrap_or_else(|e| panic!("{e}")), json!(expected));
    }
    // The read-only grant, opened by the calls above, refuses a write.
    let e = plugin_error(
        write
            .call(json!({"path": inputs.join("doc.txt"), "text": "x"}), &ctx)
            .await,
    );
    assert!(matches!(e, PluginError::Failed { .. }), "{e:?}");
    assert_eq!(
        std::fs::read_to_string(inputs.join("doc.txt")).unwrap(),
        "input text"
    );
}
