//! NVML in a child process: `cdi-gen nvml-facts` prints the GPU facts as JSON, and hooks
//! that must not load driver code themselves (statically linked, single-threaded before
//! `setns`) run it with a scrubbed environment and `/` as working directory and read them.
//! The child is a trusted host binary named by an absolute path; its output is bounded.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::facts::GpuFacts;
use super::nvml::NvmlBackendError;

/// The only environment the helper gets (no LD_PRELOAD, LD_LIBRARY_PATH, container env).
pub const HELPER_PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
/// Subcommand of `cdi-gen` that prints the facts.
pub const HELPER_SUBCOMMAND: &str = "nvml-facts";
/// Largest accepted facts document (64 GPUs x 7 MIG devices is about 60 KiB).
pub const MAX_FACTS_BYTES: usize = 16 << 20;
/// Largest kept error output.
const MAX_STDERR_BYTES: usize = 64 << 10;
/// How long NVML may take (initialisation without persistence mode takes ~2 s per GPU
/// on big nodes; hooks.d gives the whole hook 30 s).
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(20);

fn helper_err(helper: &Path, message: String) -> NvmlBackendError {
    NvmlBackendError::Helper {
        helper: helper.display().to_string(),
        message,
    }
}

/// Runs `helper nvml-facts --nvml-lib lib` with a clean environment and returns its facts.
pub fn query(helper: &Path, lib: &OsStr, timeout: Duration) -> Result<GpuFacts, NvmlBackendError> {
    if !helper.is_absolute() {
        return Err(helper_err(
            helper,
            "the NVML helper must be an absolute path (set GPU_HOOK_CDI_GEN / --cdi-gen to e.g. /usr/bin/cdi-gen)".into(),
        ));
    }
    let (key, value) = HELPER_PATH_ENV.split_once('=').unwrap_or(("PATH", ""));
    let child = Command::new(helper)
        .arg(HELPER_SUBCOMMAND)
        .arg("--nvml-lib")
        .arg(lib)
        .env_clear()
        .env(key, value)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            helper_err(
                helper,
                format!("cannot start it: {e} (install cdi-gen there or point GPU_HOOK_CDI_GEN / --cdi-gen at it)"),
            )
        })?;
    let (status, out, err) = collect(child, timeout).map_err(|m| helper_err(helper, m))?;
    let err = String::from_utf8_lossy(&err);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if !status.success() {
        let why = if last.is_empty() {
            format!("it exited with {status} and no message")
        } else {
            last.to_string()
        };
        return Err(helper_err(helper, why));
    }
    serde_json::from_slice::<GpuFacts>(&out).map_err(|e| {
        helper_err(
            helper,
            format!("its output is not a GPU facts document ({e}); is it a cdi-gen of the same version?"),
        )
    })
}

/// Reads stdout and stderr of `child` until both close, within `timeout` and the size
/// bounds; kills the child on timeout or overflow. Single-threaded (poll), so callers
/// that later `setns` stay single-threaded.
fn collect(
    mut child: Child,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let fail = |child: &mut Child, msg: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(msg)
    };
    while stdout.is_some() || stderr.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return fail(
                &mut child,
                format!(
                    "it did not finish within {} s (NVML hung?); killed",
                    timeout.as_secs()
                ),
            );
        }
        let mut fds = Vec::with_capacity(2);
        for s in [
            stdout.as_ref().map(|s| s.as_raw_fd()),
            stderr.as_ref().map(|s| s.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            fds.push(libc::pollfd {
                fd: s,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structures that
        // lives across the call; poll only writes their `revents` fields.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return fail(&mut child, format!("poll on its output failed: {e}"));
        }
        for p in fds.iter().filter(|p| p.revents != 0) {
            let mut buf = [0u8; 65536];
            let is_out = stdout.as_ref().map(|s| s.as_raw_fd()) == Some(p.fd);
            let r = if is_out {
                stdout.as_mut().map(|s| s.read(&mut buf))
            } else {
                stderr.as_mut().map(|s| s.read(&mut buf))
            };
            match r {
                Some(Ok(0)) | None => {
                    if is_out {
                        stdout = None;
                    } else {
                        stderr = None;
                    }
                }
                Some(Ok(k)) => {
                    let (dst, max) = if is_out {
                        (&mut out, MAX_FACTS_BYTES)
                    } else {
                        (&mut err, MAX_STDERR_BYTES)
                    };
                    if dst.len() + k > max {
                        if is_out {
                            return fail(
                                &mut child,
                                format!("its output exceeds {max} bytes; killed"),
                            );
                        }
                        // Keep the start of stderr, drop the rest.
                    } else {
                        dst.extend_from_slice(&buf[..k]);
                    }
                }
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return fail(&mut child, format!("cannot read its output: {e}")),
            }
        }
    }
    // Both pipes are closed: the child is exiting; wait for it within the deadline.
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((status, out, err)),
            Ok(None) if Instant::now() >= deadline => {
                return fail(
                    &mut child,
                    format!("it did not exit within {} s; killed", timeout.as_secs()),
                )
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return fail(&mut child, format!("cannot wait for it: {e}")),
        }
    }
}

/// What `cdi-gen nvml-facts` prints: the facts as one JSON document.
pub fn facts_json(facts: &GpuFacts) -> String {
    serde_json::to_string(facts).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvidia::facts::{Gpu, Mig, Source};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    /// Held by every test of this module: a script is written and then executed, and a
    /// child forked by another test thread in between would hold the script open for
    /// writing, making its exec fail with ETXTBSY ("Text file busy").
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("helper.sh");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "#!/bin/sh\n{body}").unwrap();
        drop(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn facts() -> GpuFacts {
        GpuFacts {
            source: Source::Nvml,
            driver_version: Some("550.54.14".into()),
            cuda_version: Some("12.4".into()),
            gpus: vec![Gpu {
                index: 0,
                minor: 0,
                uuid: "GPU-1".into(),
                name: "H200".into(),
                bus_id: "0000:3b:00.0".into(),
                mig_enabled: true,
                migs: vec![Mig {
                    index: 0,
                    gi: 1,
                    ci: 0,
                    uuid: None,
                }],
            }],
        }
    }

    #[test]
    fn round_trip_through_a_child_with_a_clean_environment() {
        let _serial = serial();
        let d = tempfile::tempdir().unwrap();
        let json = facts_json(&facts());
        std::fs::write(d.path().join("facts.json"), &json).unwrap();
        // The child proves its environment and cwd: any LD_PRELOAD or cwd leak fails it.
        let h = script(
            d.path(),
            &format!(
                "[ -z \"$LD_PRELOAD$LD_LIBRARY_PATH$HOME\" ] || {{ echo leaked env >&2; exit 9; }}\n[ \"$(pwd)\" = / ] || {{ echo cwd >&2; exit 9; }}\n[ \"$1 $2 $3\" = 'nvml-facts --nvml-lib /x/libnvidia-ml.so.1' ] || {{ echo args $* >&2; exit 9; }}\ncat {}",
                d.path().join("facts.json").display()
            ),
        );
        let got = query(
            &h,
            OsStr::new("/x/libnvidia-ml.so.1"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(got, facts());
    }

    #[test]
    fn failure_message_is_the_childs_last_line() {
        let _serial = serial();
        let d = tempfile::tempdir().unwrap();
        let h = script(
            d.path(),
            "echo 'first' >&2; echo 'cannot load libnvidia-ml.so.1: no such file' >&2; exit 3",
        );
        let e = query(&h, OsStr::new("lib"), Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "NVML helper {} failed: cannot load libnvidia-ml.so.1: no such file",
                h.display()
            )
        );
    }

    #[test]
    fn hung_child_is_killed_at_the_deadline() {
        let _serial = serial();
        let d = tempfile::tempdir().unwrap();
        let h = script(d.path(), "exec sleep 30");
        let t = Instant::now();
        let e = query(&h, OsStr::new("lib"), Duration::from_millis(300)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("did not finish within 0 s"), "{e}");
    }

    #[test]
    fn garbage_and_relative_paths_are_refused() {
        let _serial = serial();
        let d = tempfile::tempdir().unwrap();
        let h = script(d.path(), "echo '{\"source\":\"Nvml\",\"evil\":1}'");
        let e = query(&h, OsStr::new("lib"), Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("not a GPU facts document"), "{e}");
        let e = query(
            Path::new("usr/bin/cdi-gen"),
            OsStr::new("lib"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("must be an absolute path"), "{e}");
        let e = query(
            Path::new("/nonexistent/cdi-gen"),
            OsStr::new("lib"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot start it"), "{e}");
    }

    #[test]
    fn oversized_output_is_refused() {
        let _serial = serial();
        let d = tempfile::tempdir().unwrap();
        let h = script(d.path(), "head -c 20000000 /dev/zero");
        let e = query(&h, OsStr::new("lib"), Duration::from_secs(20)).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
    }
}
