//! Test 7: the same container, run 20 times in a row on the same directory rootfs
//! (bare runc, both hooks), works every time, and afterwards the rootfs holds no
//! change except empty mount-point files/dirs (overlay upper dir listing, before/after).

use e2e_tests::*;

const RUNS: usize = 20;

fn repeat(stage: &str) {
    let env = hooked_env();
    let scratch = Scratch::new("repeat");
    let ov = Overlay::new(scratch.path(), "rootfs", &env.rootfs);
    let upper_before = snapshot_tree(&ov.upper, false);
    assert!(
        upper_before.len() == 1,
        "fixture: a fresh upper dir must be empty"
    );
    let mounts_before = mount_table();
    let mut b = Bundle::new(scratch.path(), "bundle", &ov.merged, &[MPI_HELLO]);
    b.enable_hooks(true, true);
    let (mpi, glibc) = (Hook::mpi(&b.log, "info"), Hook::glibc(&b.log, "info"));
    b.add_hook(stage, &glibc);
    b.add_hook(stage, &mpi);
    let mut after_first = None;
    for i in 1..=RUNS {
        let out = b.run_runc();
        out.assert_mpich(
            &env.host.version,
            &format!("run {i}/{RUNS} of the same container ({stage})"),
        );
        let snap = snapshot_tree(&ov.upper, false);
        match &after_first {
            None => after_first = Some(snap),
            Some(first) => {
                let d = diff_snapshots_ignoring_dir_mtime(first, &snap);
                assert!(
                    d.is_empty(),
                    "run {i}: the rootfs keeps changing from run to run (leftovers accumulate):\n  {}",
                    d.join("\n  ")
                );
            }
        }
    }
    let bad = forbidden_upper_entries(&ov);
    let listing: Vec<String> = snapshot_tree(&ov.upper, false)
        .into_iter()
        .map(|(p, i)| format!("/{} {} size={}", p.display(), i.kind, i.size))
        .collect();
    assert!(
        bad.is_empty(),
        "after {RUNS} runs the rootfs has changes other than empty mount points:\n  {}\nupper dir listing:\n  {}",
        bad.join("\n  "),
        listing.join("\n  ")
    );
    eprintln!(
        "upper dir after {RUNS} runs ({stage}):\n  {}",
        listing.join("\n  ")
    );
    let m = new_mounts(&mounts_before, &mount_table());
    assert!(
        m.is_empty(),
        "mounts left on the host after {RUNS} runs: {m:#?}"
    );
}

#[test]
fn runc_same_rootfs_20_runs_create_runtime() {
    repeat("createRuntime");
}

#[test]
fn runc_same_rootfs_20_runs_create_container() {
    repeat("createContainer");
}
