//! One runc container with gpu-hook on a fresh overlay of the cached rootfs, for the tests
//! that run many small cases (runc_e2e, hostile_requests); the fake machines and the other
//! helpers come from the test-support crate.

use std::path::Path;

use e2e_tests::{Bundle, Overlay, RunOutput, Scratch};
use serde_json::Value;
use test_support::{add_raw_hook, cached_rootfs, hook_args, hook_env, FakeMachine};

use crate::support::hook_json;

/// One runc container with gpu-hook at `stage` on a fresh overlay of [`cached_rootfs`].
pub struct Case<'a> {
    pub machine: &'a FakeMachine,
    pub env: Vec<String>,
    pub extra_args: Vec<String>,
    pub script: String,
    pub stage: &'a str,
    /// Changes the image (through the overlay's merged dir) before the run.
    pub prepare: Option<&'a dyn Fn(&Path)>,
    /// Extra hooks (stage, hook object) after gpu-hook.
    pub more_hooks: Vec<(&'a str, serde_json::Value)>,
    /// Leave gpu-hook itself out (for subcommand-only runs).
    pub no_inject: bool,
    /// Changes config.json (capabilities, annotations) before the run.
    pub config: Option<&'a dyn Fn(&mut Value)>,
}

impl<'a> Case<'a> {
    /// A case with `env` in the container; gpu-hook gets `--env-requests always` (the
    /// containers are unprivileged), so the env is a request.
    pub fn new(machine: &'a FakeMachine, env: &[&str], script: &str) -> Case<'a> {
        Case {
            machine,
            env: env.iter().map(|s| s.to_string()).collect(),
            extra_args: vec!["--env-requests".into(), "always".into()],
            config: None,
            script: script.to_string(),
            stage: "createRuntime",
            prepare: None,
            more_hooks: Vec::new(),
            no_inject: false,
        }
    }

    /// Runs the case on an overlay of the cached rootfs; returns the output and the upper dir.
    pub fn run(&self, scratch: &Scratch, name: &str) -> (RunOutput, Overlay) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = &format!(
            "{name}{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let rootfs = cached_rootfs();
        let ov = Overlay::new(scratch.path(), name, &rootfs);
        if let Some(p) = self.prepare {
            p(&ov.merged);
        }
        let mut b = Bundle::new(
            scratch.path(),
            &format!("{name}-bundle"),
            &ov.merged,
            &["sh", "-c", &self.script],
        );
        for e in &self.env {
            b.add_env(e);
        }
        if let Some(f) = self.config {
            f(&mut b.config);
        }
        let no_specs = scratch.subdir(&format!("{name}-nospecs"));
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let args = hook_args(self.machine, &no_specs.display().to_string(), &extra);
        let env = hook_env(b.hook_log());
        if !self.no_inject {
            add_raw_hook(&mut b, self.stage, hook_json(args, env));
        }
        for (stage, h) in &self.more_hooks {
            add_raw_hook(&mut b, stage, h.clone());
        }
        let out = b.run_runc();
        (out, ov)
    }
}
