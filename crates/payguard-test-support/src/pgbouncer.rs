//! [`PgBouncer`]: the pooler production puts in front of PostgreSQL, in
//! transaction pooling mode, started for one test.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A PgBouncer process in transaction pooling mode on a free port of
/// 127.0.0.1, in front of the server a `postgres://` URL names (every
/// database on it, trust authentication for that URL's user). It is
/// stopped and its files removed when dropped.
///
/// Transaction pooling hands each transaction to whichever server
/// connection is free: session state (`SET`, `LISTEN`, session advisory
/// locks, named prepared statements on PgBouncer before 1.21) does not
/// follow a client from one transaction to the next.
///
/// ```no_run
/// # async fn example() {
/// use payguard_test_support::{PgBouncer, TestDb};
/// let db = TestDb::new().await;
/// let bouncer = PgBouncer::start(db.url());
/// let pooled_url = bouncer.url_for(db.url());
/// # }
/// ```
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// Starts `pgbouncer` (from `PATH` or `/usr/sbin`), as the `postgres`
    /// user when the tests run as root (it refuses to run as root), and
    /// waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When PgBouncer is not installed or does not start; the message says
    /// how to install it.
    pub fn start(database_url: &str) -> Self {
        let parsed = url::Url::parse(database_url).expect("a postgres:// URL");
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port().unwrap_or(5432);
        let user = match parsed.username() {
            "" => "postgres".to_owned(),
            user => user.to_owned(),
        };
        let program = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("pgbouncer"));
        let dir = std::env::temp_dir().join(format!(
            "payguard-pgbouncer-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for PgBouncer");
        let listen = free_port();
        let config = format!(
            "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\n\
             pool_mode = transaction\nmax_client_conn = 2000\ndefault_pool_size = 20\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             server_reset_query =\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).expect("write pgbouncer.ini");
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n"))
            .expect("write users.txt");
        let as_root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
        let mut command = if as_root {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(
                chown.is_ok_and(|status| status.success()),
                "cannot hand {} to the postgres user",
                dir.display()
            );
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "these tests need PgBouncer ({error}): install it (apt-get install -y pgbouncer)"
                )
            });
        let mut bouncer = Self {
            child,
            dir,
            port: listen,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok() {
                return bouncer;
            }
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                let log =
                    std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
                panic!("PgBouncer exited at start ({status}): {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PgBouncer did not listen on 127.0.0.1:{listen} within 5 s");
    }

    /// The port PgBouncer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` with its host and port replaced by PgBouncer's.
    ///
    /// # Panics
    ///
    /// When `url` is not a URL.
    pub fn url_for(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("a URL");
        parsed
            .set_host(Some("127.0.0.1"))
            .expect("a URL that can have a host");
        parsed
            .set_port(Some(self.port))
            .expect("a URL that can have a port");
        parsed.into()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}
