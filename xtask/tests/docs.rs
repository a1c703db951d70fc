//! `xtask docs`: generates into a temporary directory and checks what a packager and a
//! reader of the pages would see (files, `.TH` sections, options, subcommands, env vars).

use std::path::Path;
use std::process::Command;

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The `.TH` line's section (second field).
fn th_section(page: &str) -> String {
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("no .TH line");
    th.split_whitespace()
        .nth(2)
        .expect("no section")
        .to_string()
}

const EXPECTED: &[&str] = &[
    "man/man8/mpi-hook.8",
    "man/man8/glibc-hook.8",
    "man/man8/gpu-hook.8",
    "man/man8/gpu-hook-create-symlinks.8",
    "man/man8/gpu-hook-update-ldcache.8",
    "man/man8/gpu-hook-enable-cuda-compat.8",
    "man/man8/cdi-gen.8",
    "man/man8/cdi-gen-generate.8",
    "man/man8/cdi-gen-list.8",
    "man/man8/cdi-gen-validate.8",
    "man/man8/cdi-gen-mpi.8",
    "man/man8/cdi-gen-net.8",
    "man/man8/cdi-gen-doctor.8",
    "man/man1/hpc-rank.1",
];

#[test]
fn every_page_and_completion_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let written = xtask::docs::generate(dir.path()).unwrap();
    let mut expected: Vec<String> = EXPECTED.iter().map(|s| s.to_string()).collect();
    for bin in ["mpi-hook", "glibc-hook", "gpu-hook", "cdi-gen", "hpc-rank"] {
        expected.push(format!("completions/bash/{bin}"));
        expected.push(format!("completions/zsh/_{bin}"));
        expected.push(format!("completions/fish/{bin}.fish"));
    }
    for rel in &expected {
        let meta = std::fs::metadata(dir.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(meta.len() > 0, "{rel} is empty");
    }
    assert_eq!(written.len(), expected.len(), "{written:?}");
    // Uncompressed roff, and no page for the hidden helper subcommand or `help`.
    assert!(read(dir.path(), "man/man8/cdi-gen.8").starts_with(".ie"));
    assert!(!dir.path().join("man/man8/cdi-gen-help.8").exists());
    assert!(!dir.path().join("man/man8/cdi-gen-nvml-facts.8").exists());
}

#[test]
fn cdi_gen_page_has_section_8_options_and_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    xtask::docs::generate(dir.path()).unwrap();
    let page = read(dir.path(), "man/man8/cdi-gen.8");
    assert_eq!(th_section(&page), "8");
    assert!(page.contains("\\-\\-vendor"), "{page}");
    assert!(page.contains("cdi\\-gen\\-list(8)"), "{page}");
    assert!(page.contains("cdi\\-gen\\-validate(8)"), "{page}");
    assert!(page.contains(".SH \"SEE ALSO\""));
    let list = read(dir.path(), "man/man8/cdi-gen-list.8");
    assert_eq!(th_section(&list), "8");
    assert!(list.contains("\\-\\-spec\\-dir"), "{list}");
    // Cross reference back to the main page.
    let see_also = list.split(".SH \"SEE ALSO\"").nth(1).expect("no SEE ALSO");
    assert!(see_also.contains("cdi\\-gen"), "{see_also}");
}

#[test]
fn hook_pages_name_env_vars_hooks_d_files_and_annotations() {
    let dir = tempfile::tempdir().unwrap();
    xtask::docs::generate(dir.path()).unwrap();
    let mpi = read(dir.path(), "man/man8/mpi-hook.8");
    assert_eq!(th_section(&mpi), "8");
    let env = mpi.split(".SH ENVIRONMENT").nth(1).expect("no ENVIRONMENT");
    for var in [
        "MPI_LIBS",
        "MPI_DEPENDENCY_LIBS",
        "BIND_MOUNTS",
        "MPI_COMPATIBILITY_TYPE",
        "GLIBC_LIBS",
        "HPC_HOOKS_LOG_LEVEL",
        "HPC_HOOKS_LOG_FILE",
    ] {
        assert!(env.contains(var), "{var} missing from ENVIRONMENT:\n{env}");
    }
    assert!(mpi.contains("hpc\\-hooks\\-mpi.json"));
    assert!(mpi.contains("com.hooks.mpi.enabled=true"));

    let glibc = read(dir.path(), "man/man8/glibc-hook.8");
    assert!(glibc.contains("hpc\\-hooks\\-glibc.json"));
    assert!(glibc.contains("com.hooks.glibc.enabled=true"));
    assert!(glibc.contains("HPC_HOOKS_LOG_FILE"));

    let gpu = read(dir.path(), "man/man8/gpu-hook.8");
    assert!(gpu.contains("hpc\\-hooks\\-gpu.json"));
    for s in [
        "NVIDIA_VISIBLE_DEVICES",
        "CUDA_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "cdi.k8s.io",
        "GPU_HOOK_DRIVER_ROOT",
        "GPU_HOOK_SPEC_DIRS",
        "gpu\\-hook\\-create\\-symlinks(8)",
    ] {
        assert!(gpu.contains(s), "{s} missing from gpu-hook.8");
    }
    let sub = read(dir.path(), "man/man8/gpu-hook-update-ldcache.8");
    assert!(sub.contains("\\-\\-folder"));
    assert!(
        sub.contains("HPC_HOOKS_LOG_LEVEL"),
        "logging env applies to subcommands"
    );
}

#[test]
fn hpc_rank_page_is_section_1() {
    let dir = tempfile::tempdir().unwrap();
    xtask::docs::generate(dir.path()).unwrap();
    let page = read(dir.path(), "man/man1/hpc-rank.1");
    assert_eq!(th_section(&page), "1");
    assert!(page.contains("\\-\\-cleanup\\-job"));
    assert!(page.contains(".SH \"EXIT STATUS\""));
    assert!(page.contains("HPC_RANK_PODMAN_RUN_OPTS"));
}

#[test]
fn completions_name_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    xtask::docs::generate(dir.path()).unwrap();
    let bash = read(dir.path(), "completions/bash/cdi-gen");
    assert!(bash.contains("complete "), "{bash}");
    assert!(bash.contains("cdi-gen"));
    assert!(bash.contains("--vendor"));
    let zsh = read(dir.path(), "completions/zsh/_gpu-hook");
    assert!(zsh.starts_with("#compdef gpu-hook"), "{zsh}");
    assert!(zsh.contains("create-symlinks"));
    let fish = read(dir.path(), "completions/fish/hpc-rank.fish");
    assert!(fish.contains("complete -c hpc-rank"), "{fish}");
}

/// The binary edge: `xtask docs --out DIR` writes the files and lists them; a directory
/// that cannot be created is a one-line error and exit status 1.
#[test]
fn binary_writes_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["docs", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("man/man1/hpc-rank.1"), "{stdout}");

    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["docs", "--out"])
        .arg(blocker.join("sub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write the docs under"), "{stderr}");
}

/// Renders one page with man(1) (man-db, installed by .ci/run), as admins will read it.
#[test]
fn man_renders_a_page() {
    let have_man = Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_man,
        "man(1) is needed to check that the pages render: apt-get install man-db"
    );
    let dir = tempfile::tempdir().unwrap();
    xtask::docs::generate(dir.path()).unwrap();
    let out = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("man/man8/cdi-gen.8"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SYNOPSIS"), "{text}");
    assert!(text.contains("cdi-gen-list(8)"), "{text}");
}

/// clap's own consistency checks on every definition the docs are built from.
#[test]
fn clap_definitions_pass_debug_assert() {
    for bin in xtask::docs::binaries() {
        bin.command.debug_assert();
    }
}

#[test]
fn hook_pages_point_at_the_conf_file_and_their_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    xtask::docs::generate(dir.path()).unwrap();
    for hook in ["mpi-hook", "glibc-hook", "gpu-hook"] {
        let page = read(dir.path(), &format!("man/man8/{hook}.8"));
        // roff escapes `-` as `\-`; lines may break anywhere in the paragraph.
        let flat = page.replace("\\-", "-").replace('\n', " ");
        assert!(
            flat.contains(
                "Configured by /etc/hpc-hooks/hpc-hooks.conf, see hpc-hooks-configure(8)"
            ),
            "{hook}: {page}"
        );
        let see_also = flat.split(".SH \"SEE ALSO\"").nth(1).expect("no SEE ALSO");
        assert!(
            see_also.contains("\\fBhpc-hooks-configure\\fR(8)"),
            "{hook}: {see_also}"
        );
        let exit = flat
            .split(".SH \"EXIT STATUS\"")
            .nth(1)
            .expect("no EXIT STATUS");
        assert!(
            exit.contains("usage and configuration errors included"),
            "{hook}: {exit}"
        );
    }
}
