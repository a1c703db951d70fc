//! README.md and docs/*.md against the tree and the binaries: every relative link (and
//! its anchor) and every `docs/...` or repository path resolves, and every `--flag` the
//! docs give a binary is in its `--help`. The second half proves that the checker finds
//! each kind of mistake.

use std::path::{Path, PathBuf};

use xtask::doclint::{anchors, check_repo, check_text, flag_map, slug};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

#[test]
fn readme_and_docs_links_paths_and_flags_resolve() {
    let root = repo_root();
    let problems = check_repo(&root).expect("the docs can be read");
    let report: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        problems.is_empty(),
        "{} problem(s) in README.md / docs/:\n{}",
        problems.len(),
        report.join("\n")
    );
}

#[test]
fn readme_is_a_short_entry_page_linking_every_doc() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines (at most ~200: move reference material into docs/)"
    );
    for file in xtask::doclint::doc_files(&root)
        .unwrap()
        .iter()
        .filter(|f| f.starts_with("docs"))
    {
        let rel = file.to_string_lossy();
        assert!(
            readme.contains(&format!("]({rel})")),
            "README.md does not link {rel}"
        );
    }
    assert!(
        readme.contains("```mermaid"),
        "README.md lost its run-time diagram"
    );
}

#[test]
fn every_multi_rank_example_uses_hpc_rank() {
    // `srun ... podman run` silently gives every rank a world of size 1: only the
    // explanation of why not may name it, never as a command to copy.
    let root = repo_root();
    for file in xtask::doclint::doc_files(&root).unwrap() {
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        let mut fence = false;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                fence = !fence;
                continue;
            }
            let cmd = line.split('#').next().unwrap_or_default();
            let launcher = cmd.contains("srun ") || cmd.contains("mpiexec ");
            assert!(
                !(fence && launcher && cmd.contains("podman run")),
                "{}:{}: `srun/mpiexec podman run` makes every rank a world of size 1; use hpc-rank: {line}",
                file.display(),
                i + 1
            );
        }
    }
}

#[test]
fn slugs_follow_the_forge() {
    assert_eq!(slug("Why not `srun podman run`"), "why-not-srun-podman-run");
    assert_eq!(
        slug("GPUs (gpu-hook and cdi-gen)"),
        "gpus-gpu-hook-and-cdi-gen"
    );
    assert_eq!(
        slug("Configuration (hooks.d `env`, or the option)"),
        "configuration-hooksd-env-or-the-option"
    );
    let a = anchors("# A\n## Same\n```\n# not a heading\n```\n## Same\n");
    assert!(
        a.contains("a") && a.contains("same") && a.contains("same-1"),
        "{a:?}"
    );
    assert!(!a.contains("not-a-heading"));
}

/// A small tree with one doc, checked with the real binaries' flags.
fn check(doc: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/other.md"),
        "# Other\n## Real section\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("packaging")).unwrap();
    std::fs::write(dir.path().join("packaging/install.sh"), "").unwrap();
    let flags = flag_map(&repo_root()).unwrap();
    check_text(dir.path(), Path::new("README.md"), doc, &flags)
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn a_clean_doc_passes() {
    let doc = "# t\n\nSee [other](docs/other.md#real-section) and [here](#t), `docs/other.md`.\n\n\
               ```sh\nsrun -n 2 --mpi=pmi2 hpc-rank --runtime podman --no-mpi IMG cmd\n\
               cdi-gen --vendor amd --output /etc/cdi/amd.yaml\n\
               packaging/install.sh --bins mpi-hook --no-build \\\n  --gpu no\n```\n\n\
               ## hpc-rank options\n\n`--kill-grace S`, `--cleanup-stale`; podman gets `podman run --preserve-fds 1`.\n";
    assert_eq!(check(doc), Vec::<String>::new());
}

#[test]
fn a_broken_link_is_found() {
    let p = check("# t\n\nSee [missing](docs/missing.md).\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("README.md:3: link target `docs/missing.md` does not exist"),
        "{p:?}"
    );
}

#[test]
fn a_broken_anchor_is_found() {
    let p = check("# t\n\n[x](docs/other.md#no-such-section) [y](#nowhere)\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("no heading with the anchor `#no-such-section`"),
        "{p:?}"
    );
    assert!(p[1].contains("`#nowhere`"), "{p:?}");
}

#[test]
fn a_missing_docs_path_is_found_in_prose_and_code() {
    let p = check("# t\n\nRead docs/gone.md first.\n\n```sh\ncat docs/gone2.md\n```\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("`docs/gone.md`") && p[1].contains("`docs/gone2.md`"),
        "{p:?}"
    );
}

#[test]
fn a_flag_missing_from_the_binary_is_found() {
    // After the binary in a code block, across a continued line, and in a code span.
    let p = check(
        "# t\n\n```sh\nsrun --mpi=pmi2 hpc-rank --no-such-flag ROOTFS cmd\n\
         cdi-gen --vendor nvidia \\\n  --bogus-option x\n```\n\nRun `gpu-hook --frobnicate`.\n",
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].contains("`--no-such-flag` is given to hpc-rank, but is not in its --help"),
        "{p:?}"
    );
    assert!(
        p[1].contains("`--bogus-option` is given to cdi-gen"),
        "{p:?}"
    );
    assert!(
        p[2].contains("`--frobnicate` is given to gpu-hook"),
        "{p:?}"
    );
}

#[test]
fn a_flag_span_belongs_to_the_sections_binary() {
    // `--runtime` is hpc-rank's, not cdi-gen's; under a cdi-gen heading it is wrong.
    let p = check(
        "# cdi-gen reference\n\n| flag | meaning |\n|---|---|\n| `--runtime podman` | no |\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("`--runtime` is given to cdi-gen"), "{p:?}");
}

#[test]
fn script_flags_are_checked_too() {
    let p = check("# t\n\n```sh\npackaging/install.sh --no-such-option\n```\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("given to install.sh"), "{p:?}");
}

#[test]
fn a_hidden_flag_must_be_called_hidden() {
    let flags = flag_map(&repo_root()).unwrap();
    let hidden = flags["cdi-gen"]
        .hidden
        .iter()
        .next()
        .cloned()
        .expect("cdi-gen has hidden test flags");
    let p = check(&format!("# t\n\n`cdi-gen {hidden} DIR` does it.\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("is hidden from its --help"), "{p:?}");
    assert!(check(&format!(
        "# t\n\nHidden, for tests: `cdi-gen {hidden} DIR`.\n"
    ))
    .is_empty());
}
