//! Audio results: speech is kept by content hash beside the database and
//! copied into each run that reuses it; transcripts are keyed by the
//! audio's content, not its file name.

use super::{files_in, Env, Run};
use serde_json::Value;
use std::path::PathBuf;

const SPEAK: &str = r#"
name: speak
user_inputs:
  - {id: line, type: string}
nodes:
  - id: voice
    type: text_to_speech_task
    model: {provider: mock, model: tts}
    input:
      text: "{{ line }}"
      voice: narrator
"#;

fn path_of(v: &Value) -> PathBuf {
    PathBuf::from(v.as_str().expect("a path"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_speech_lands_in_the_new_run_folder_after_the_old_one_is_gone() {
    let env = Env::new();
    let run = |line: &str| {
        Run::new(&env, SPEAK)
            .cache(&env.cache())
            .input("line", line)
            .run()
    };
    let first = run("one two three four five").await;
    let first_file = path_of(first.out("voice"));
    assert!(first_file.starts_with(&first.outcome.out_dir));
    let bytes = std::fs::read(&first_file).unwrap();
    assert!(bytes.len() > 44, "a WAV file with samples");
    let blobs = env.db.parent().unwrap().join("blobs");
    assert_eq!(files_in(&blobs).len(), 1, "the audio is kept once");

    std::fs::remove_dir_all(&first.outcome.out_dir).unwrap();

    let second = run("one two three four five").await;
    let f = second.finished("voice");
    assert!(f.cached, "\n{}", second.describe());
    assert_eq!(f.stats.calls, 0);
    let second_file = path_of(second.out("voice"));
    assert!(
        second_file.starts_with(&second.outcome.out_dir),
        "{} is not in the second run's folder {}",
        second_file.display(),
        second.outcome.out_dir.display()
    );
    assert_ne!(second.outcome.out_dir, first.outcome.out_dir);
    assert_eq!(std::fs::read(&second_file).unwrap(), bytes);
    assert_eq!(files_in(&blobs).len(), 1);

    // Other text, other audio (a longer file: 60 ms per word).
    let other = run("one two three four five six seven").await;
    assert!(!other.cached("voice"));
    assert!(std::fs::read(path_of(other.out("voice"))).unwrap().len() > bytes.len());
    assert_eq!(files_in(&blobs).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_are_keyed_by_the_audio_content() {
    let env = Env::new();
    let yaml = r#"
name: transcribe
user_inputs:
  - {id: file, type: string}
nodes:
  - id: words
    type: speech_to_text_task
    model: {provider: mock, model: stt}
    input:
      audio_file: "{{ file }}"
"#;
    let a = env.root.join("a.wav");
    let b = env.root.join("b.wav");
    let c = env.root.join("c.wav");
    std::fs::write(&a, b"RIFF same audio").unwrap();
    std::fs::write(&b, b"RIFF same audio").unwrap();
    std::fs::write(&c, b"RIFF other audio").unwrap();
    let run = |file: &PathBuf| {
        Run::new(&env, yaml)
            .cache(&env.cache())
            .input("file", file.display().to_string())
            .run()
    };
    let first = run(&a).await;
    assert_eq!(first.out("words"), &Value::from("transcript of a.wav"));
    let same_bytes = run(&b).await;
    assert!(
        same_bytes.cached("words"),
        "the same audio under another name"
    );
    assert_eq!(same_bytes.out("words"), first.out("words"));
    let other = run(&c).await;
    assert!(!other.cached("words"));
    assert_eq!(other.out("words"), &Value::from("transcript of c.wav"));
}
