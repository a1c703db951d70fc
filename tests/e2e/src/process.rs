//! Running host commands with a timeout and keeping everything a failure message needs
//! (command line, exit, stdout/stderr tails, attached hook logs) in one [`RunOutput`].

use std::fmt;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::mpi::{mpich_version, open_mpi_version};

/// Default timeout of one runtime invocation.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Result of one command, with everything needed for a useful failure message.
pub struct RunOutput {
    pub what: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Extra files shown in failure messages (hook log, crun hook stderr...).
    pub attachments: Vec<(String, String)>,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    /// Panics with the full output unless the command succeeded.
    pub fn assert_success(&self, context: &str) -> &Self {
        if !self.success() {
            panic!("{context}: command failed\n{self}");
        }
        self
    }

    /// Panics unless the command failed (non-zero exit, no timeout).
    pub fn assert_failure(&self, context: &str) -> &Self {
        if self.success() || self.timed_out {
            panic!("{context}: expected the container start to FAIL\n{self}");
        }
        self
    }

    /// Version printed by mpi-hello.
    pub fn mpich_version(&self) -> Option<String> {
        mpich_version(&self.stdout)
    }

    /// Panics unless the command succeeded and mpi-hello reported `version`.
    pub fn assert_mpich(&self, version: &str, context: &str) -> &Self {
        self.assert_success(context);
        match self.mpich_version() {
            Some(v) if v == version => self,
            got => panic!(
                "{context}: expected mpi-hello to report MPICH {version}, got {got:?}\n{self}"
            ),
        }
    }

    /// Panics unless the command succeeded and mpi-hello reported Open MPI `version`.
    pub fn assert_open_mpi(&self, version: &str, context: &str) -> &Self {
        self.assert_success(context);
        match open_mpi_version(&self.stdout) {
            Some(v) if v == version => self,
            got => panic!(
                "{context}: expected mpi-hello to report Open MPI {version}, got {got:?}\n{self}"
            ),
        }
    }

    /// stdout and stderr together (for substring assertions on error messages).
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Attaches the contents of `path` (if it exists) to failure messages.
    pub fn attach_file(&mut self, label: &str, path: &Path) {
        if let Ok(s) = fs::read_to_string(path) {
            self.attachments.push((label.to_string(), tail(&s, 6000)));
        }
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &s[start..])
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.what)?;
        if self.timed_out {
            writeln!(f, "--- TIMED OUT after {:?}", self.elapsed)?;
        } else {
            writeln!(f, "--- exit: {:?} after {:?}", self.status, self.elapsed)?;
        }
        writeln!(f, "--- stdout:\n{}", tail(&self.stdout, 6000))?;
        writeln!(f, "--- stderr:\n{}", tail(&self.stderr, 6000))?;
        for (label, content) in &self.attachments {
            writeln!(f, "--- {label}:\n{content}")?;
        }
        Ok(())
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` (stdin null, output captured), killing it after `timeout`.
pub fn run_cmd(mut cmd: Command, timeout: Duration) -> RunOutput {
    let what = describe(&cmd);
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (res, timed_out) = match rx.recv_timeout(timeout) {
        Ok(r) => (Some(r), false),
        Err(_) => {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            (rx.recv_timeout(Duration::from_secs(20)).ok(), true)
        }
    };
    let elapsed = start.elapsed();
    match res {
        Some(Ok(out)) => RunOutput {
            what,
            status: Some(out.status),
            timed_out,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
            attachments: Vec::new(),
        },
        Some(Err(e)) => panic!("waiting for `{what}`: {e}"),
        None => RunOutput {
            what,
            status: None,
            timed_out: true,
            stdout: String::new(),
            stderr: "(output lost: the process or a descendant kept its pipes open)".into(),
            elapsed,
            attachments: Vec::new(),
        },
    }
}

/// Runs a shell command line on the host; panics on failure.
pub fn sh(script: &str) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    let out = run_cmd(c, Duration::from_secs(120));
    out.assert_success(&format!("host command `{script}`"));
    out.stdout
}
