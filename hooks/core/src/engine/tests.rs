//! The engine against a directory rootfs with the recording [`Sys`]: what it asks the
//! kernel for, and what it leaves in the rootfs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cdi_specs::plan::{DeviceRule, Library, Plan, Replace};
use cdi_specs::types::{ContainerEdits, DeviceNode as CdiNode, Hook, Mount};

use super::sys::testing::{Call, RecordingSys};
use super::*;
use crate::ldcache::{self, CacheEntry, CacheFormat, LdCache};
use crate::mount::BindFlags;

const X8664: i32 = 0x0303;
const LIBM: &str = "/lib/x86_64-linux-gnu/libm.so.6";

/// A rootfs directory with an `/etc/ld.so.cache` naming libc, and a host directory.
struct Fixture {
    dir: tempfile::TempDir,
    rootfs: Rootfs,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("host")).unwrap();
        let cache = LdCache {
            entries: vec![CacheEntry {
                soname: "libc.so.6".into(),
                path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                flags: X8664,
                osversion: 0,
                hwcap: 0,
            }],
            generator: None,
            hwcap_subdirs: vec![],
            format: CacheFormat::New,
        };
        std::fs::write(
            root.join("etc/ld.so.cache"),
            crate::ldcache_write::write(&cache, "test").unwrap(),
        )
        .unwrap();
        let rootfs = Rootfs::open(&root).unwrap();
        Fixture { dir, rootfs }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Host path of `rootfs/<p>` (as the recording Sys names bind targets).
    fn in_root(&self, p: &str) -> PathBuf {
        std::fs::canonicalize(self.root())
            .unwrap()
            .join(p.trim_start_matches('/'))
    }

    /// A host file `host/<name>` with `text`; returns its path.
    fn host_file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join("host").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p.display().to_string()
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

    fn apply(&self, plan: &Plan, privileged: bool) -> (Result<Report, EngineError>, Vec<Call>) {
        let sys = RecordingSys::new(privileged);
        let r = apply(&self.target(), plan, &sys);
        (r, sys.calls())
    }

    /// The one cache the engine wrote on the tmpfs, parsed.
    fn written_cache(&self) -> LdCache {
        let dir = self.root().join("run/hpc-hooks");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ld.so.cache"))
            .collect();
        assert_eq!(names, ["ld.so.cache.0"], "exactly one cache written");
        ldcache::parse(&std::fs::read(dir.join("ld.so.cache.0")).unwrap()).unwrap()
    }
}

fn node(path: &str, host: &str, typ: &str, permissions: &str) -> CdiNode {
    CdiNode {
        path: path.into(),
        host_path: host.into(),
        typ: typ.into(),
        permissions: permissions.into(),
        ..CdiNode::default()
    }
}

fn mount(host: &str, container: &str) -> Mount {
    Mount {
        host_path: host.into(),
        container_path: container.into(),
        options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
        typ: String::new(),
    }
}

fn hook(args: &[&str]) -> Hook {
    Hook {
        hook_name: "createContainer".into(),
        path: "/usr/bin/nvidia-cdi-hook".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Hook::default()
    }
}

fn plan(edits: ContainerEdits) -> Plan {
    Plan {
        edits,
        ..Plan::default()
    }
}

fn grant(t: DevType, major: u64, minor: u64, access: &str) -> Grant {
    Grant {
        dev: DeviceNode {
            dev_type: t,
            major,
            minor,
        },
        access: Access::parse(access).unwrap(),
    }
}

fn binds(calls: &[Call]) -> Vec<(PathBuf, PathBuf, BindFlags)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Bind {
                source,
                target,
                flags,
                ..
            } => Some((source.clone(), target.clone(), *flags)),
            _ => None,
        })
        .collect()
}

#[test]
fn node_under_dev_is_created_when_privileged_and_bound_when_not() {
    let edits = ContainerEdits {
        device_nodes: vec![node("/dev/xnull", "/dev/null", "", "")],
        ..ContainerEdits::default()
    };
    let f = Fixture::new();
    let (r, calls) = f.apply(&plan(edits.clone()), true);
    let r = r.unwrap();
    let want = NodeSpec {
        kind: NodeKind::Char,
        major: 1,
        minor: 3,
        mode: 0o666,
        uid: None,
        gid: None,
    };
    assert_eq!(
        calls,
        [
            Call::Mknod {
                path: PathBuf::from("/dev/xnull"),
                node: want
            },
            Call::Grant {
                grants: vec![grant(DevType::Char, 1, 3, "rwm")]
            }
        ]
    );
    assert_eq!((r.nodes_created, r.nodes_bound), (1, 0));
    assert!(r
        .log
        .contains(&"created /dev/xnull (c 1:3 mode 666)".to_string()));

    let f = Fixture::new();
    let (r, calls) = f.apply(&plan(edits), false);
    let r = r.unwrap();
    assert_eq!(
        binds(&calls),
        [(
            PathBuf::from("/dev/null"),
            f.in_root("/dev/xnull"),
            BindFlags::DEVICE
        )]
    );
    assert!(f.root().join("dev/xnull").metadata().unwrap().is_file());
    assert_eq!((r.nodes_created, r.nodes_bound), (0, 1));
    assert_eq!(r.grants, [grant(DevType::Char, 1, 3, "rwm")]);
}

#[test]
fn rootless_binds_nodes_and_skips_the_device_cgroup_with_one_line() {
    // A hook in a rootless container: no mknod, and no device cgroup to edit. The nodes
    // are bound, the cgroup step is skipped and said once (never silently).
    let f = Fixture::new();
    let mut p = plan(ContainerEdits {
        device_nodes: vec![
            node("/dev/xnull", "/dev/null", "", ""),
            node("/dev/xzero", "/dev/zero", "c", "r"),
        ],
        ..ContainerEdits::default()
    });
    p.device_rules.push(DeviceRule {
        typ: "c".into(),
        major: 231,
        minor: 64,
        access: "rw".into(),
    });
    let sys = RecordingSys::rootless();
    let r = apply(&f.target(), &p, &sys).unwrap();
    let calls = sys.calls();
    assert!(!calls
        .iter()
        .any(|c| matches!(c, Call::Mknod { .. } | Call::Grant { .. })));
    assert_eq!(
        binds(&calls),
        [
            (
                PathBuf::from("/dev/null"),
                f.in_root("/dev/xnull"),
                BindFlags::DEVICE
            ),
            (
                PathBuf::from("/dev/zero"),
                f.in_root("/dev/xzero"),
                BindFlags::DEVICE
            )
        ]
    );
    let skipped: Vec<&String> = r
        .log
        .iter()
        .filter(|l| l.starts_with("device cgroup not edited"))
        .collect();
    assert_eq!(
        skipped,
        ["device cgroup not edited for c 1:3 rwm, c 1:5 r, c 231:64 rw: the hook runs in a user namespace (a rootless container), where the runtime sets up no device cgroup to edit; the container opens the nodes with their host permissions"]
    );
    assert_eq!((r.nodes_created, r.nodes_bound), (0, 2));
}

#[test]
fn node_outside_dev_is_bound_even_when_privileged() {
    let f = Fixture::new();
    let edits = ContainerEdits {
        device_nodes: vec![node("/opt/nodes/null", "/dev/null", "c", "rw")],
        ..ContainerEdits::default()
    };
    let (r, calls) = f.apply(&plan(edits), true);
    r.unwrap();
    assert!(!calls.iter().any(|c| matches!(c, Call::Mknod { .. })));
    assert_eq!(
        binds(&calls),
        [(
            PathBuf::from("/dev/null"),
            f.in_root("/opt/nodes/null"),
            BindFlags::DEVICE
        )]
    );
}

#[test]
fn bound_node_must_match_the_host_node() {
    let f = Fixture::new();
    // The spec says c 1:5 (zero), the host path is null (c 1:3): refused, nothing bound.
    let mut n = node("/dev/xzero", "/dev/null", "c", "");
    n.major = Some(1);
    n.minor = Some(5);
    let edits = ContainerEdits {
        device_nodes: vec![n],
        ..ContainerEdits::default()
    };
    let (r, calls) = f.apply(&plan(edits), false);
    let e = r.unwrap_err().to_string();
    assert_eq!(
        e,
        "device node /dev/xzero: host node /dev/null is not a c 1:5 node; refusing to bind it; fix or regenerate the CDI spec"
    );
    assert!(binds(&calls).is_empty());
}

#[test]
fn read_permission_gives_a_read_rule_and_device_rules_are_granted() {
    let f = Fixture::new();
    let mut p = plan(ContainerEdits {
        device_nodes: vec![
            node("/dev/xnull", "/dev/null", "", "r"),
            node("/dev/xzero", "/dev/zero", "c", "none"),
        ],
        ..ContainerEdits::default()
    });
    p.device_rules.push(DeviceRule {
        typ: "c".into(),
        major: 231,
        minor: 64,
        access: "rw".into(),
    });
    let (r, calls) = f.apply(&p, true);
    let r = r.unwrap();
    let want = vec![
        grant(DevType::Char, 1, 3, "r"),
        grant(DevType::Char, 231, 64, "rw"),
    ];
    assert_eq!(r.grants, want);
    assert_eq!(
        calls.last(),
        Some(&Call::Grant {
            grants: want.clone()
        })
    );
    assert_eq!(want[0].to_string(), "c 1:3 r");
}

#[test]
fn fifo_nodes_are_created_without_a_rule() {
    let f = Fixture::new();
    let fifo = f.dir.path().join("host/fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let edits = ContainerEdits {
        device_nodes: vec![node("/dev/xfifo", fifo.to_str().unwrap(), "p", "")],
        ..ContainerEdits::default()
    };
    let (r, calls) = f.apply(&plan(edits), true);
    let r = r.unwrap();
    assert_eq!(
        calls,
        [Call::Mknod {
            path: PathBuf::from("/dev/xfifo"),
            node: NodeSpec {
                kind: NodeKind::Fifo,
                major: 0,
                minor: 0,
                mode: 0o600,
                uid: None,
                gid: None
            }
        }]
    );
    assert!(r.grants.is_empty());
}

#[test]
fn repeated_mount_last_wins_and_mounts_go_by_depth() {
    let f = Fixture::new();
    let a = f.host_file("a.conf", "a");
    let b = f.host_file("b.conf", "b");
    let c = f.host_file("c.conf", "c");
    let edits = ContainerEdits {
        mounts: vec![
            mount(&a, "/opt/x/y/f.conf"),
            mount(&b, "/opt/g.conf"),
            mount(&c, "/opt/x//y/./f.conf"),
        ],
        ..ContainerEdits::default()
    };
    let (r, calls) = f.apply(&plan(edits), false);
    let r = r.unwrap();
    let got: Vec<(PathBuf, PathBuf)> = binds(&calls)
        .into_iter()
        .map(|(s, t, flags)| {
            assert_eq!(flags, BindFlags::FILE_RO);
            (s, t)
        })
        .collect();
    assert_eq!(
        got,
        [
            (PathBuf::from(&b), f.in_root("/opt/g.conf")),
            (PathBuf::from(&c), f.in_root("/opt/x/y/f.conf")),
        ]
    );
    assert_eq!((r.mounts_bound, r.mounts_total), (2, 2));
    assert!(
        r.log.contains(&format!(
            "bind-mounted 2 of 2 files: {b} at /opt/g.conf, {c} at /opt/x//y/./f.conf"
        )),
        "{:?}",
        r.log
    );
}

#[test]
fn device_node_as_a_mount_source_is_left_out() {
    let f = Fixture::new();
    let edits = ContainerEdits {
        mounts: vec![mount("/dev/null", "/opt/null")],
        ..ContainerEdits::default()
    };
    let (r, calls) = f.apply(&plan(edits), true);
    assert_eq!(r.unwrap().mounts_bound, 0);
    assert!(binds(&calls).is_empty());
}

#[test]
fn replace_binds_over_an_image_file_at_its_real_path() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.root().join("usr/lib")).unwrap();
    std::fs::write(f.root().join("usr/lib/libmpi.so.12"), "image").unwrap();
    let host = f.host_file("libmpi.so.12", "host");
    let mut p = Plan::default();
    p.replace.push(Replace {
        host_path: host.clone(),
        container_path: "/usr/lib/libmpi.so.12".into(),
    });
    let (r, calls) = f.apply(&p, false);
    let r = r.unwrap();
    assert_eq!(
        binds(&calls),
        [(
            PathBuf::from(&host),
            f.in_root("/usr/lib/libmpi.so.12"),
            BindFlags::FILE_RO
        )]
    );
    assert_eq!(r.replaced, 1);
    assert_eq!(r.log, [format!("bound {host} over /usr/lib/libmpi.so.12")]);
}

#[test]
fn replace_refuses_a_directory_and_a_symlinked_target() {
    let f = Fixture::new();
    let host = f.host_file("libmpi.so.12", "host");
    std::fs::create_dir_all(f.root().join("usr/lib/libdir.so")).unwrap();
    std::fs::write(f.root().join("etc/hostname"), "image").unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../etc/hostname",
        f.root().join("usr/lib/librel.so"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/hostname", f.root().join("usr/lib/libabs.so")).unwrap();
    let replace = |c: &str| Plan {
        replace: vec![Replace {
            host_path: host.clone(),
            container_path: c.into(),
        }],
        ..Plan::default()
    };
    let (r, calls) = f.apply(&replace("/usr/lib/libdir.so"), false);
    assert_eq!(
        r.unwrap_err().to_string(),
        format!("container path /usr/lib/libdir.so is a directory, not a regular file; refusing to mount {host} over it")
    );
    assert!(binds(&calls).is_empty());
    for link in ["/usr/lib/librel.so", "/usr/lib/libabs.so"] {
        let (r, calls) = f.apply(&replace(link), false);
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("container path {link} is not a real path (it resolves to /etc/hostname); refusing to mount {host} over it: plan with the image file's real path")
        );
        assert!(binds(&calls).is_empty());
    }
    assert_eq!(
        std::fs::read_to_string(f.root().join("etc/hostname")).unwrap(),
        "image"
    );
}

#[test]
fn libraries_go_on_the_tmpfs_and_into_one_cache() {
    let f = Fixture::new();
    let host = f.host_file("libfoo.so.1.2", "elf");
    let p = Plan {
        libraries: vec![Library {
            host_path: host.clone(),
            soname: "libfoo.so.1".into(),
            cache_flags: X8664,
        }],
        ..Plan::default()
    };
    let (r, calls) = f.apply(&p, false);
    let r = r.unwrap();
    let run = f.in_root("/run/hpc-hooks");
    assert_eq!(
        calls[0],
        Call::Tmpfs {
            target: run.clone()
        }
    );
    assert_eq!(
        binds(&calls),
        [
            (
                PathBuf::from(&host),
                f.in_root("/run/hpc-hooks/lib/libfoo.so.1"),
                BindFlags::FILE_RO
            ),
            (
                f.in_root("/run/hpc-hooks/ld.so.cache.0"),
                f.in_root("/etc/ld.so.cache"),
                BindFlags::FILE_RO
            ),
        ]
    );
    assert_eq!(
        calls.last(),
        Some(&Call::Remount {
            target: run,
            flags: BindFlags::FILE_RO
        })
    );
    let cache = f.written_cache();
    let mut got: Vec<(&str, &str)> = cache
        .entries
        .iter()
        .map(|e| (e.soname.as_str(), e.path.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
            ("libfoo.so.1", "/run/hpc-hooks/lib/libfoo.so.1")
        ]
    );
    assert_eq!((r.libraries_added, r.cache_entries), (1, Some(2)));
    // The image's own cache is untouched (the new one is bound over it).
    let image = ldcache::parse(&std::fs::read(f.root().join("etc/ld.so.cache")).unwrap()).unwrap();
    assert_eq!(image.entries.len(), 1);
}

#[test]
fn libraries_need_a_readable_image_cache() {
    let f = Fixture::new();
    std::fs::write(f.root().join("etc/ld.so.cache"), "garbage").unwrap();
    let p = Plan {
        libraries: vec![Library {
            host_path: f.host_file("libfoo.so.1", "elf"),
            soname: "libfoo.so.1".into(),
            cache_flags: X8664,
        }],
        ..Plan::default()
    };
    let (r, calls) = f.apply(&p, false);
    let e = r.unwrap_err().to_string();
    assert!(
        e.starts_with("the container's /etc/ld.so.cache cannot be read (")
            && e.ends_with("rebuild the image with `RUN ldconfig` so that libraries can be added"),
        "{e}"
    );
    assert!(calls.is_empty(), "nothing mounted: {calls:?}");
}

#[test]
fn update_ldcache_folders_and_libraries_make_one_cache_compat_first() {
    let f = Fixture::new();
    for d in ["usr/lib64", "usr/local/cuda/compat"] {
        std::fs::create_dir_all(f.root().join(d)).unwrap();
        std::fs::copy(LIBM, f.root().join(d).join("libm.so.6")).unwrap();
    }
    let mut p = plan(ContainerEdits {
        hooks: vec![
            hook(&[
                "nvidia-cdi-hook",
                "update-ldcache",
                "--folder",
                "/usr/lib64",
            ]),
            hook(&[
                "nvidia-cdi-hook",
                "update-ldcache",
                "--folder=/usr/local/cuda/compat",
            ]),
        ],
        ..ContainerEdits::default()
    });
    p.libraries.push(Library {
        host_path: f.host_file("libfoo.so.1", "elf"),
        soname: "libfoo.so.1".into(),
        cache_flags: X8664,
    });
    let (r, calls) = f.apply(&p, false);
    let r = r.unwrap();
    let tmpfs = calls
        .iter()
        .filter(|c| matches!(c, Call::Tmpfs { .. }))
        .count();
    assert_eq!(tmpfs, 1);
    let cache = f.written_cache();
    let libm: Vec<&str> = cache
        .entries
        .iter()
        .filter(|e| e.soname == "libm.so.6")
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(libm, ["/usr/local/cuda/compat/libm.so.6"]);
    assert!(cache
        .entries
        .iter()
        .any(|e| e.soname == "libfoo.so.1" && e.path == "/run/hpc-hooks/lib/libfoo.so.1"));
    assert!(r.log.contains(
        &"update-ldcache: 1 libraries in /usr/local/cuda/compat, /usr/lib64".to_string()
    ));
}

#[test]
fn create_symlinks_in_root_and_dotdot_clamped() {
    let f = Fixture::new();
    let p = plan(ContainerEdits {
        hooks: vec![hook(&[
            "nvidia-cdi-hook",
            "create-symlinks",
            "--link",
            "libcuda.so.1::/usr/lib/libcuda.so",
            "--link",
            "../../../../host-secret::/usr/lib/libx.so",
        ])],
        ..ContainerEdits::default()
    });
    let (r, _) = f.apply(&p, false);
    let r = r.unwrap();
    assert_eq!((r.links_created, r.links_total), (2, 2));
    assert_eq!(
        std::fs::read_link(f.root().join("usr/lib/libcuda.so")).unwrap(),
        Path::new("libcuda.so.1")
    );
    // A second run keeps what is there.
    let (r, _) = f.apply(&p, false);
    assert_eq!(r.unwrap().links_created, 0);

    let p = plan(ContainerEdits {
        hooks: vec![hook(&[
            "gpu-hook",
            "create-symlinks",
            "--link",
            "x::/usr/../../../../etc/evil",
        ])],
        ..ContainerEdits::default()
    });
    let (r, _) = f.apply(&p, false);
    assert_eq!(r.unwrap().links_created, 1);
    // `..` stops at the container's `/`: the link is the rootfs's /etc/evil, never the
    // host's (or the fixture directory's) above it.
    assert_eq!(
        std::fs::read_link(f.root().join("etc/evil")).unwrap(),
        Path::new("x")
    );
    assert!(!f.dir.path().join("etc/evil").exists());
}

#[test]
fn env_and_hooks_not_carried_out_are_warned() {
    let f = Fixture::new();
    let p = plan(ContainerEdits {
        env: vec!["A=1".into(), "B=2".into(), "A=3".into()],
        hooks: vec![
            hook(&["nvidia-cdi-hook", "enable-cuda-compat"]),
            hook(&["other-tool", "--x"]),
        ],
        ..ContainerEdits::default()
    });
    let (r, calls) = f.apply(&p, false);
    let r = r.unwrap();
    assert!(calls.is_empty());
    assert_eq!(
        r.warnings,
        [
            "the CDI edits ask for an enable-cuda-compat hook, which the engine does not carry out (its planner lists /usr/local/cuda/compat as an update-ldcache folder instead); not run: /usr/bin/nvidia-cdi-hook nvidia-cdi-hook enable-cuda-compat".to_string(),
            "the CDI edits set environment variables, which a hook cannot change in a created container; not applied: A=3 B=2".to_string(),
            "the CDI edits ask for hooks the hpc-hooks engine does not implement; not run: /usr/bin/nvidia-cdi-hook other-tool --x".to_string(),
        ]
    );
}

#[test]
fn empty_plan_changes_nothing() {
    let f = Fixture::new();
    let (r, calls) = f.apply(&Plan::default(), true);
    assert_eq!(r.unwrap(), Report::default());
    assert!(calls.is_empty());
    assert!(!f.root().join("run").exists());
}

#[test]
fn folders_alone_start_a_new_cache_when_the_image_has_none() {
    let f = Fixture::new();
    std::fs::remove_file(f.root().join("etc/ld.so.cache")).unwrap();
    std::fs::create_dir_all(f.root().join("usr/lib64")).unwrap();
    std::fs::copy(LIBM, f.root().join("usr/lib64/libm.so.6")).unwrap();
    let sys = RecordingSys::new(false);
    let log = cache::add_folders(&f.rootfs, &sys, &[PathBuf::from("/usr/lib64")]).unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].ends_with("; starting a new cache"), "{log:?}");
    assert_eq!(log[1], "update-ldcache: 1 libraries in /usr/lib64");
    assert_eq!(
        log[2],
        "regenerated the loader cache (1 entries) and bound it over /etc/ld.so.cache"
    );
    let cache = f.written_cache();
    assert_eq!(cache.entries.len(), 1);
    assert_eq!(cache.entries[0].path, "/usr/lib64/libm.so.6");
    // The mount point for the cache is an empty file in the image's /etc.
    assert_eq!(
        f.root().join("etc/ld.so.cache").metadata().unwrap().len(),
        0
    );
}
