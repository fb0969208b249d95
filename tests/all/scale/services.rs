//! Private PostgreSQL and Redis servers for the scale tests. Each test
//! starts its own, on a free 127.0.0.1 port with its files in a temporary
//! folder, so tests never share state, never touch an instance the system
//! runs on 5432 or 6379 (Debian's packages may start one), and leave
//! nothing behind. The programs are Debian's `postgresql` and
//! `redis-server`, which `scripts/test-deps.sh` installs; a machine without
//! them fails with what to run, never skips.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long any one wait for a server (to start, stop or answer) may take
/// before the test fails with the server's log.
const DEADLINE: Duration = Duration::from_secs(30);

/// Starts tried, each on a fresh port: a port found free can be taken by
/// another test between finding it and the server binding it.
const ATTEMPTS: usize = 3;

/// What to run when a program is missing.
const INSTALL: &str = "run `bash scripts/test-deps.sh` (Debian's postgresql and redis-server)";

/// The superuser `initdb` creates: the user of every database URL.
const SUPERUSER: &str = "composer";

/// The system user Debian's postgresql package creates. PostgreSQL refuses
/// to run as root, so a test process running as root (as in CI containers)
/// runs the server's programs as this user instead.
const SYSTEM_USER: &str = "postgres";

/// A private PostgreSQL server: its own data folder in a temporary
/// directory, a free port on 127.0.0.1, stopped (`pg_ctl stop -m
/// immediate`) and removed when dropped.
pub(crate) struct Postgres {
    /// Holds `data/` (the cluster), `postgres.log` and the Unix socket.
    dir: TempDir,
    /// The folder of `initdb`, `pg_ctl` and `postgres`.
    bin: PathBuf,
    psql: PathBuf,
    /// Whom to run the server's programs as, when not this process's user.
    run_as: Option<RunAs>,
    port: u16,
    /// Databases `database()` created so far, for unique names.
    databases: AtomicUsize,
}

/// `runuser -u USER --`: how a root process runs a program as `USER`.
struct RunAs {
    runuser: PathBuf,
    user: &'static str,
}

impl Postgres {
    pub(crate) fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("composer-pg-")
            .tempdir()
            .expect("cannot create a temporary folder for PostgreSQL");
        let bin = postgres_bin();
        let psql = find_psql(&bin);
        let run_as = running_as_root().then(|| RunAs {
            runuser: runuser(),
            user: SYSTEM_USER,
        });
        // From here on, dropping (also when a step below panics) stops
        // whatever was started and removes the folder.
        let mut postgres = Postgres {
            dir,
            bin,
            psql,
            run_as,
            port: 0,
            databases: AtomicUsize::new(0),
        };
        postgres.hand_over();
        postgres.initdb();
        postgres.listen();
        postgres
    }

    /// `postgres://USER@127.0.0.1:PORT/DBNAME` for a database created fresh
    /// by this call (each call a new database, its name unique), so tests
    /// sharing a server never see each other's tables.
    pub(crate) fn database(&self) -> String {
        let number = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("composer_test_{number}");
        let mut command = Command::new(&self.psql);
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE \"{name}\""));
        if let Err(failure) = run(&mut command) {
            panic!(
                "cannot create the database {name}: {failure}\n--- server log ---\n{}",
                read_log(&self.log())
            );
        }
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// What `psql` prints for `sql` against the database at `url`, unaligned
    /// and without headers (`select 1` gives `1`), trimmed.
    pub(crate) fn query(&self, url: &str, sql: &str) -> String {
        let mut command = Command::new(&self.psql);
        command
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"])
            .arg(url)
            .arg("-c")
            .arg(sql);
        match run(&mut command) {
            Ok(stdout) => stdout.trim().to_string(),
            Err(failure) => panic!("{sql} failed on {url}: {failure}"),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's program `name`, run as the system user when this
    /// process is root, in the temporary folder (a root test's working
    /// folder, under /root, may be closed to that user).
    fn program(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        let mut command = match &self.run_as {
            Some(run_as) => {
                let mut command = Command::new(&run_as.runuser);
                command.args(["-u", run_as.user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    /// Gives the temporary folder to the user the server runs as (when it
    /// is not this process's): `tempfile` creates it for its creator only.
    fn hand_over(&self) {
        let Some(run_as) = &self.run_as else {
            return;
        };
        let user = run_as.user;
        let known = Command::new("id")
            .args(["-u", user])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            known,
            "the tests run as root, which PostgreSQL refuses to run as, and the \
             `{user}` system user to run it as instead does not exist: {INSTALL}"
        );
        let mut command = Command::new("chown");
        command.arg("-R").arg(user).arg(self.dir.path());
        if let Err(failure) = run(&mut command) {
            panic!("cannot give PostgreSQL's temporary folder to `{user}`: {failure}");
        }
    }

    /// Creates the cluster: superuser `composer`, no password for
    /// connections from this machine (the only ones it listens to), and
    /// nothing synced to disk (the data dies with the test).
    fn initdb(&self) {
        let mut command = self.program("initdb");
        command.arg("-D").arg(self.data()).args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if let Err(failure) = run(&mut command) {
            let hint = match &self.run_as {
                Some(run_as) => format!(
                    "\n(it ran as `{}`, who must be able to reach {}: every folder \
                     above it must be traversable by others, as /tmp is; TMPDIR \
                     chooses where it is)",
                    run_as.user,
                    self.dir.path().display()
                ),
                None => String::new(),
            };
            panic!("initdb failed: {failure}{hint}");
        }
    }

    /// Starts the server on a free port, without durability (fsync and
    /// the like off: the data dies with the test), trying another port
    /// when the one picked was taken meanwhile.
    fn listen(&mut self) {
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            self.port = free_port();
            match self.start_server() {
                Ok(()) => return,
                Err(failure) => failures.push(failure),
            }
            // A start that timed out may have left a server behind.
            self.stop_server();
        }
        panic!(
            "PostgreSQL did not start in {ATTEMPTS} attempts:\n{}\n--- server log ---\n{}",
            failures.join("\n"),
            read_log(&self.log())
        );
    }

    /// Stops the server (as if it crashed: `-m immediate`).
    pub(crate) fn stop(&self) {
        self.stop_server();
    }

    /// Starts it again on the same port, with the same databases.
    pub(crate) fn restart(&self) {
        if let Err(failure) = self.start_server() {
            panic!(
                "PostgreSQL did not start again: {failure}\n--- server log ---\n{}",
                read_log(&self.log())
            );
        }
    }

    /// `pg_ctl start` on `self.port`, without durability (fsync and the
    /// like off: the data dies with the test).
    fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='{}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut command = self.program("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .arg("-t")
            .arg(DEADLINE.as_secs().to_string())
            .arg("-o")
            .arg(options)
            .args(["-w", "start"]);
        run(&mut command).map(|_| ())
    }

    /// `pg_ctl stop -m immediate`, the fastest stop (there is nothing to
    /// keep); if that fails while the server still runs, SIGKILL to the
    /// postmaster, whose children then exit on their own. Never panics:
    /// it runs in `drop`.
    fn stop_server(&self) {
        let mut command = self.program("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-t")
            .arg(DEADLINE.as_secs().to_string())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if command.status().is_ok_and(|status| status.success()) {
            return;
        }
        // postmaster.pid's first line is the postmaster's process id; the
        // file is gone when no server runs.
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            use nix::sys::signal::{kill, Signal};
            use nix::unistd::Pid;
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_server();
        // Then `dir` drops, removing the cluster, log and socket.
    }
}

/// A private redis-server on a free 127.0.0.1 port, with no persistence,
/// in a temporary folder; killed when dropped.
pub(crate) struct Redis {
    /// Its working folder (`--dir`) and `redis.log`.
    dir: TempDir,
    program: PathBuf,
    port: u16,
    /// The server, while it runs.
    child: Option<Child>,
}

impl Redis {
    pub(crate) fn start() -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("composer-redis-")
            .tempdir()
            .expect("cannot create a temporary folder for redis-server");
        let program = on_path("redis-server")
            .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
            .unwrap_or_else(|| panic!("redis-server is not installed: {INSTALL}"));
        let mut redis = Redis {
            dir,
            program,
            port: 0,
            child: None,
        };
        for _ in 0..ATTEMPTS {
            redis.port = free_port();
            if redis.launch() {
                return redis;
            }
        }
        panic!(
            "redis-server did not start in {ATTEMPTS} attempts; its log:\n{}",
            read_log(&redis.log())
        );
    }

    /// `redis://127.0.0.1:PORT/`
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (SIGKILL: nothing to save) and waits until the port
    /// refuses connections, as when Redis goes away under a running server.
    pub(crate) fn stop(&mut self) {
        self.kill();
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect_timeout(&loopback(self.port), Duration::from_secs(1)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts connections {DEADLINE:?} after redis-server was killed",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port (after `stop`; a server still
    /// running is stopped first), empty, waiting until it answers PING.
    pub(crate) fn restart(&mut self) {
        self.stop();
        if !self.launch() {
            panic!(
                "redis-server did not start again on port {}; its log:\n{}",
                self.port,
                read_log(&self.log())
            );
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns the server on `self.port` and waits until it answers PING:
    /// false, with nothing left running, if it exits first (its port was
    /// taken) or does not answer in time.
    fn launch(&mut self) -> bool {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("cannot open redis-server's log in its temporary folder");
        let stderr = log
            .try_clone()
            .expect("cannot share redis-server's log between stdout and stderr");
        let mut child = Command::new(&self.program)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        let deadline = Instant::now() + DEADLINE;
        loop {
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            let exited = !matches!(child.try_wait(), Ok(None));
            if exited || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, then reaps it, so its port is closed on return.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        // Then `dir` drops, removing the log.
    }
}

/// Whether a server on 127.0.0.1:`port` answers `PING` with `+PONG`, as
/// Redis does to an inline command: no client library needed.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err()
        || stream.set_write_timeout(timeout).is_err()
        || stream.write_all(b"PING\r\n").is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 64];
    while !answer.ends_with(b"\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    answer.starts_with(b"+PONG")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port nothing listens on right now (the listener is dropped at once,
/// hence the retries of whoever binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("cannot bind a free port on 127.0.0.1")
}

/// Runs `command` to its end: its stdout, or what went wrong (the command,
/// its exit status and everything it printed).
fn run(command: &mut Command) -> Result<String, String> {
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => return Err(format!("cannot run {command:?}: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    Err(format!(
        "{command:?} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// A server's log for a failure message (it may not exist yet).
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}

/// Whether this process runs as root, from `id -u` (the features of `nix`
/// these tests enable do not include `geteuid`).
fn running_as_root() -> bool {
    let mut command = Command::new("id");
    command.arg("-u");
    match run(&mut command) {
        Ok(uid) => uid.trim() == "0",
        Err(failure) => panic!("cannot tell whether the tests run as root: {failure}"),
    }
}

/// The folder of PostgreSQL's server programs: the newest
/// `/usr/lib/postgresql/VERSION/bin` (Debian's, off the PATH), else the
/// folder `initdb` on the PATH really is in (it may be a symlink, and
/// `pg_ctl` looks for `postgres` next to itself).
fn postgres_bin() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin);
    newest
        .or_else(|| {
            let initdb = on_path("initdb")?;
            let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
            real.parent().map(Path::to_path_buf)
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb is not installed (looked in /usr/lib/postgresql/*/bin \
                 and on the PATH): {INSTALL}"
            )
        })
}

/// `15` -> [15], `9.6` -> [9, 6]; None for a name that is no version.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// `psql` of the same installation, else /usr/bin/psql (Debian's wrapper),
/// else the PATH's.
fn find_psql(bin: &Path) -> PathBuf {
    [bin.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| on_path("psql"))
        .unwrap_or_else(|| panic!("psql is not installed: {INSTALL}"))
}

/// `runuser` (util-linux), which root's PATH may lack /usr/sbin for.
fn runuser() -> PathBuf {
    on_path("runuser")
        .or_else(|| {
            ["/usr/sbin/runuser", "/sbin/runuser"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "the tests run as root, which PostgreSQL refuses to run as, and \
                 runuser (util-linux) to run it as `{SYSTEM_USER}` is not installed"
            )
        })
}

/// `name` in a folder of the PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[test]
fn postgres_starts_and_gives_fresh_databases() {
    let postgres = Postgres::start();
    let first = postgres.database();
    let second = postgres.database();
    assert_ne!(first, second);
    let prefix = format!("postgres://composer@127.0.0.1:{}/", postgres.port());
    for url in [&first, &second] {
        assert!(url.starts_with(&prefix), "{url} is not on {prefix}");
        assert_eq!(postgres.query(url, "select 1"), "1", "on {url}");
    }
    // Fresh: what one test's database holds, another's does not.
    postgres.query(&first, "create table seen (id int)");
    let tables = "select count(*) from pg_tables where tablename = 'seen'";
    assert_eq!(postgres.query(&first, tables), "1");
    assert_eq!(postgres.query(&second, tables), "0");
}

#[test]
fn redis_stops_and_restarts() {
    let mut redis = Redis::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert!(ping(port), "redis-server does not answer PING on {port}");
    redis.stop();
    assert!(
        TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)).is_err(),
        "port {port} still accepts connections after stop()"
    );
    redis.restart();
    assert_eq!(redis.port(), port, "restart() moved to another port");
    assert!(
        ping(port),
        "redis-server does not answer PING after restart()"
    );
}
