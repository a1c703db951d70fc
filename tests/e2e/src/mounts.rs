//! The host mount table (/proc/self/mountinfo) as data, and the mounts a run left behind
//! on the host (ignoring podman's own storage and runtime dirs).

use std::collections::BTreeMap;
use std::fs;

/// One line of /proc/self/mountinfo, without the volatile ids.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountEntry {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    pub root: String,
}

/// The host mount table (`/proc/self/mountinfo`).
pub fn mount_table() -> Vec<MountEntry> {
    let s = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountEntry {
                root: unescape_mountinfo(f.get(3)?),
                mount_point: unescape_mountinfo(f.get(4)?),
                fs_type: f.get(sep + 1)?.to_string(),
                source: f.get(sep + 2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut o = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap(), 8)
                .unwrap_or(b'?');
            o.push(v);
            i += 4;
        } else {
            o.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&o).into_owned()
}

/// Mounts present in `after` but not in `before` (multiset difference), ignoring mounts
/// that podman's own storage/runtime dirs may create or keep.
pub fn new_mounts(before: &[MountEntry], after: &[MountEntry]) -> Vec<MountEntry> {
    let mut pool: BTreeMap<&MountEntry, usize> = BTreeMap::new();
    for m in before {
        *pool.entry(m).or_default() += 1;
    }
    let mut extra = Vec::new();
    for m in after {
        match pool.get_mut(m) {
            Some(n) if *n > 0 => *n -= 1,
            _ => extra.push(m.clone()),
        }
    }
    extra
        .into_iter()
        .filter(|m| {
            ![
                "/run/netns",
                "/var/lib/containers",
                "/run/containers",
                "/run/user",
            ]
            .iter()
            .any(|p| m.mount_point.starts_with(p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
    }
}
