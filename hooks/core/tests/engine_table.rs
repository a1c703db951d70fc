//! The one table of composition cases (`test_support::compose_cases`) through the live
//! engine: each case's edits, appended in order into one `Plan`, applied with
//! `engine::apply` to a directory rootfs through the recording syscall double (privileged,
//! so nodes under `/dev` are mknod'ed). What the engine asked the kernel for (nodes in
//! mknod order, the cgroup grants, mounts in bind order) and its warnings must be what
//! `cdi_specs::compose` gives for the same case; cdi-specs' `compose_table` checks that
//! compose, the config.json engine and the reference crate agree on the same table.
//! Runs unprivileged (tests/run-unprivileged.sh).

use std::path::{Path, PathBuf};

use cdi_specs::compose::{clean_path, compose, Composed};
use cdi_specs::{ContainerEdits, Plan};
use hooks_core::devices::{CgroupLocator, DevType};
use hooks_core::engine::mounts::bind_flags;
use hooks_core::engine::sys::testing::{Call, RecordingSys};
use hooks_core::engine::{apply, Report, Target};
use hooks_core::mount::BindFlags;
use hooks_core::rootfs::Rootfs;
use test_support::{completed, compose_cases};

/// A node as created: (container path, type, major, minor, mode, uid, gid).
type NodeView = (String, String, i64, i64, u32, Option<u32>, Option<u32>);

/// What the engine did, as the table compares it.
#[derive(Debug, Default, PartialEq, Eq)]
struct LiveView {
    /// mknod calls, in order.
    nodes: Vec<NodeView>,
    /// (type, major, minor, access) of the grants passed to `Sys::grant`.
    rules: Vec<(String, i64, i64, String)>,
    /// (cleaned container path, host path as in the table, flags) of the bind calls, in
    /// order.
    mounts: Vec<(String, String, BindFlags)>,
    /// `Report::warnings`.
    warnings: Vec<String>,
}

/// A tempdir with an empty rootfs and the host files the case's mounts name: the
/// table's host paths (`/h/...`) are fictional, so each is created under `host/` and the
/// edits are rewritten to it. A mount whose container name is a library (`.so`) gets a
/// regular file, every other one a directory (mount points nest: `/a`, `/a/b`, `/`).
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    host: PathBuf,
    rootfs: Rootfs,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // Canonical: the recording double names fds by their real paths.
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let root = base.join("rootfs");
        let host = base.join("host");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        let rootfs = Rootfs::open(&root).unwrap();
        Fixture {
            _dir: dir,
            root,
            host,
            rootfs,
        }
    }

    /// `edits` with every mount's host path moved into the fixture (created there).
    fn relocate(&self, edits: &[ContainerEdits]) -> Vec<ContainerEdits> {
        let mut out = edits.to_vec();
        for m in out.iter_mut().flat_map(|e| e.mounts.iter_mut()) {
            let p = self.host.join(m.host_path.trim_start_matches('/'));
            if m.container_path.contains(".so") {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, "").unwrap();
            } else {
                std::fs::create_dir_all(&p).unwrap();
            }
            m.host_path = p.display().to_string();
        }
        out
    }

    fn target(&self) -> Target<'_> {
        Target {
            rootfs: &self.rootfs,
            cgroup: CgroupLocator {
                proc_cgroup: "/nonexistent".into(),
                member_pid: None,
                cgroups_path: None,
            },
            mounts: vec![],
        }
    }

    /// `/` + the part of `p` under `base`.
    fn under(base: &Path, p: &Path) -> String {
        let rel = p
            .strip_prefix(base)
            .unwrap_or_else(|_| panic!("{} is not under {}", p.display(), base.display()));
        Path::new("/").join(rel).display().to_string()
    }

    /// Applies `edits` (appended in order) privileged; the report and what it did.
    fn run(&self, name: &str, edits: &[ContainerEdits]) -> (Report, LiveView) {
        let mut plan = Plan::default();
        for e in self.relocate(edits) {
            plan.edits.append(&e);
        }
        let sys = RecordingSys::new(true);
        let report = apply(&self.target(), &plan, &sys).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut v = LiveView {
            warnings: report.warnings.clone(),
            ..LiveView::default()
        };
        let mut grant_calls = 0;
        for c in sys.calls() {
            match c {
                Call::Mknod { path, node } => v.nodes.push((
                    path.display().to_string(),
                    node.kind.letter().to_string(),
                    node.major as i64,
                    node.minor as i64,
                    node.mode,
                    node.uid,
                    node.gid,
                )),
                Call::Grant { grants } => {
                    grant_calls += 1;
                    v.rules.extend(grants.iter().map(|g| {
                        let t = match g.dev.dev_type {
                            DevType::Char => "c",
                            DevType::Block => "b",
                        };
                        (
                            t.to_string(),
                            g.dev.major as i64,
                            g.dev.minor as i64,
                            g.access.to_string(),
                        )
                    }))
                }
                Call::Bind {
                    source,
                    target,
                    flags,
                    ..
                } => v.mounts.push((
                    Self::under(&self.root, &target),
                    Self::under(&self.host, &source),
                    flags,
                )),
                other => panic!("{name}: unexpected call {other:?}"),
            }
        }
        assert!(grant_calls <= 1, "{name}: one grant call for all rules");
        (report, v)
    }
}

/// What the live engine must do for a composed case, and why each difference from the
/// composed value is there.
fn expected(c: &Composed) -> LiveView {
    let nodes = c
        .device_nodes
        .iter()
        .map(|n| {
            (
                // The engine resolves the cleaned container path in-root.
                clean_path(&n.path),
                // CDI's `u` is a char device: mknod'ed as `c`.
                if n.typ == "u" {
                    "c".into()
                } else {
                    n.typ.clone()
                },
                n.major.unwrap_or(0),
                n.minor.unwrap_or(0),
                // A node gets an exact mode: the spec's, else its host node's, else 0666
                // (the table's typed nodes name host nodes that do not exist).
                n.file_mode.unwrap_or(0o666),
                n.uid,
                n.gid,
            )
        })
        .collect();
    let mut rules: Vec<(String, i64, i64, String)> = Vec::new();
    for r in &c.device_rules {
        let rule = (r.typ.clone(), r.major, r.minor, r.access.clone());
        // An empty access (permissions `none`) grants nothing, so it is not passed to the
        // cgroup; the same rule twice is granted once.
        if !r.access.is_empty() && !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    let mounts = c
        .mounts
        .iter()
        .map(|m| {
            (
                clean_path(&m.container_path),
                m.host_path.clone(),
                bind_flags(&m.options),
            )
        })
        .collect();
    // A hook cannot change a created container's environment nor run hooks it does not
    // know (the table has no create-symlinks / update-ldcache hook): both are warned about,
    // env with its composed value, hooks in composed order, each once.
    let mut warnings = Vec::new();
    if !c.env.is_empty() {
        warnings.push(format!(
            "the CDI edits set environment variables, which a hook cannot change in a created container; not applied: {}",
            c.env.join(" ")
        ));
    }
    let mut hooks: Vec<String> = Vec::new();
    for h in &c.hooks {
        let s = format!("{} {}", h.path, h.args.join(" "));
        if !hooks.contains(&s) {
            hooks.push(s);
        }
    }
    if !hooks.is_empty() {
        warnings.push(format!(
            "the CDI edits ask for hooks the hpc-hooks engine does not implement; not run: {}",
            hooks.join("; ")
        ));
    }
    // additionalGids, intelRdt and netDevices are settings only a runtime applies while it
    // creates the container: warned about, not applied.
    warnings.extend(hooks_core::engine::runtime_only(c));
    LiveView {
        nodes,
        rules,
        mounts,
        warnings,
    }
}

#[test]
fn live_engine_does_what_compose_gives() {
    let mut views = Vec::new();
    for (name, edits) in compose_cases() {
        let composed = compose(&completed(&edits)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let f = Fixture::new();
        let (report, live) = f.run(name, &edits);
        assert_eq!(live, expected(&composed), "{name}");
        assert_eq!(
            (report.nodes_created, report.nodes_bound, report.nodes_total),
            (live.nodes.len(), 0, composed.device_nodes.len()),
            "{name}: every composed node mknod'ed"
        );
        assert_eq!(
            (report.mounts_bound, report.mounts_total),
            (live.mounts.len(), composed.mounts.len()),
            "{name}: every composed mount bound"
        );
        assert_eq!(
            (report.links_total, report.cache_entries),
            (0, None),
            "{name}: no symlink, no loader cache"
        );
        views.push(live);
    }

    // The table pins what the live engine does, not only that it agrees with compose.
    let paths = |v: &LiveView| -> Vec<String> { v.nodes.iter().map(|n| n.0.clone()).collect() };
    assert_eq!(paths(&views[0]), ["/dev/b", "/dev/a", "/dev/c"]);
    assert_eq!(
        views[0].nodes[1],
        ("/dev/a".into(), "b".into(), 3, 3, 0o666, None, None)
    );
    assert_eq!(views[0].rules.len(), 4, "a rule for every node entry");
    let mounts = |v: &LiveView| -> Vec<(String, String)> {
        v.mounts
            .iter()
            .map(|m| (m.0.clone(), m.1.clone()))
            .collect()
    };
    assert_eq!(
        mounts(&views[1]),
        [
            ("/c".to_string(), "/h/c".to_string()),
            ("/a/b".into(), "/h/ab2".into()),
            ("/x/y".into(), "/h/x2".into()),
        ]
    );
    let order: Vec<String> = views[2].mounts.iter().map(|m| m.0.clone()).collect();
    assert_eq!(
        order,
        [
            "/z",
            "/",
            "/a",
            "/a/c",
            "/b/a",
            "/a/b",
            "/usr/bin/smi",
            "/usr/lib/x/libc.so.6"
        ]
    );
    let ro = BindFlags {
        read_only: true,
        nosuid: false,
        nodev: false,
        noexec: false,
    };
    assert_eq!(views[2].mounts[0].2, ro, "options ro,bind");
    assert_eq!(
        views[3].warnings,
        ["the CDI edits set environment variables, which a hook cannot change in a created container; not applied: A=5 B= C=4 D==x"]
    );
    let access: Vec<&str> = views[4].rules.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        access,
        ["rwm", "r", "rw", "rwm", "m"],
        "none grants nothing"
    );
    assert_eq!(
        views[5].nodes,
        [
            ("/dev/fifo".into(), "p".into(), 0, 0, 0o600, None, None),
            ("/dev/u".into(), "c".into(), 4, 4, 0o666, None, None),
            (
                "/dev/owned".into(),
                "c".into(),
                4,
                5,
                0o666,
                Some(7),
                Some(8)
            ),
        ]
    );
    assert_eq!(views[5].rules, [("c".to_string(), 4, 5, "rwm".to_string())]);
    assert_eq!(views[6].warnings.len(), 1);
    assert!(views[6].warnings[0].ends_with(
        "not run: /bin/a /bin/a createContainer; /bin/b /bin/b prestart; /bin/c /bin/c poststop; /bin/d /bin/d createContainer; /bin/e /bin/e createRuntime; /bin/f /bin/f startContainer; /bin/g /bin/g poststart"
    ));
    assert_eq!(views[7].warnings.len(), 3, "env, hooks, gids/rdt/net");
    assert!(
        views[7].warnings[2].starts_with("the CDI edits set additionalGids "),
        "{:?}",
        views[7].warnings
    );
    assert_eq!(
        views[8].nodes[0],
        ("/dev/ctr-null".into(), "c".into(), 1, 3, 0o666, None, None)
    );
    assert_eq!(views[8].rules[0], ("c".to_string(), 1, 3, "r".to_string()));
}
