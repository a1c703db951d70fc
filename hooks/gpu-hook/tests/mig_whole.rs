//! A GPU in MIG mode is offered whole too (as nvidia-ctk does): gpu-hook resolves
//! `NVIDIA_VISIBLE_DEVICES=1` and `GPU-<uuid>` of such a GPU through live discovery to
//! its `/dev/nvidia<minor>` node, and `1:0` to its MIG capability nodes. Runs as root
//! (the fake machine's nodes are made with mknod).

use std::collections::HashMap;
use std::path::PathBuf;

use gpu_discover::nvidia::DiscoveryMode;
use gpu_discover::Roots;
use gpu_hook::policy::Policy;
use gpu_hook::request::from_config;
use gpu_hook::resolve::{resolve, ResolveOptions, Source};
use test_support::{mig_minor, FakeMachine, MachineSpec};

/// The device node paths the request resolves to (spec-wide edits included).
fn nodes_for(m: &FakeMachine, value: &str) -> Vec<String> {
    let env = vec![format!("NVIDIA_VISIBLE_DEVICES={value}")];
    let req = from_config(&env, &HashMap::new(), &Policy::default(), true)
        .unwrap()
        .request;
    let opts = ResolveOptions {
        source: Source::Discover,
        spec_dirs: Vec::new(),
        roots: Roots {
            driver_root: m.root.clone(),
            dev_root: m.root.clone(),
            sys_root: m.sys.clone(),
            proc_root: m.proc.clone(),
        },
        nvml_lib: None,
        nvml_helper: PathBuf::from("/nonexistent/cdi-gen"),
        discovery: DiscoveryMode::Procfs,
        hook_path: "/usr/libexec/hpc-hooks/gpu-hook".into(),
    };
    let resolved = resolve(&req.devices, &opts)
        .unwrap_or_else(|e| panic!("NVIDIA_VISIBLE_DEVICES={value} must resolve: {e}"));
    resolved
        .edits
        .iter()
        .flat_map(|(_, e)| e.device_nodes.iter().map(|n| n.path.clone()))
        .collect()
}

#[test]
fn whole_mig_enabled_gpu_by_index_and_uuid() {
    // Both GPUs in MIG mode, two MIG devices each.
    let m = FakeMachine::build(&MachineSpec::mig(2, 2, 2));
    let gpu1 = &m.spec.gpus[1];
    let node = format!("/dev/nvidia{}", gpu1.minor);
    for value in ["1".to_string(), gpu1.uuid.clone()] {
        let nodes = nodes_for(&m, &value);
        assert!(nodes.contains(&node), "{value}: {nodes:?}");
        assert!(
            !nodes.iter().any(|n| n.starts_with("/dev/nvidia-caps/")),
            "{value}: the whole GPU has no MIG capability nodes: {nodes:?}"
        );
    }
    // Its MIG devices still resolve to their capability nodes.
    let mig = &gpu1.migs[0];
    let nodes = nodes_for(&m, "1:0");
    let cap = format!(
        "/dev/nvidia-caps/nvidia-cap{}",
        mig_minor(gpu1.minor, mig.gi, Some(mig.ci))
    );
    assert!(
        nodes.contains(&node) && nodes.contains(&cap),
        "1:0: {nodes:?}"
    );
}
