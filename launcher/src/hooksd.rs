//! Reads podman-style hooks.d files (version 1.0.0) so that bare runc runs exactly the
//! hooks the site installed for podman, with the same `env`, `args` and `timeout`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

/// Errors reading a hooks.d directory.
#[derive(Debug, thiserror::Error)]
pub enum HooksDError {
    #[error("cannot read hooks.d file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "hooks.d file {path} is not valid: {why} (podman would refuse it too; fix or remove it)"
    )]
    Invalid { path: PathBuf, why: String },
}

/// One hook to put into config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedHook {
    pub stage: String,
    pub file: PathBuf,
    pub hook: Value,
}

/// Hooks of `dirs` (later directories override files of the same name, as in podman)
/// whose `when` condition matches `annotations`, in file-name order.
pub fn load(
    dirs: &[PathBuf],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<StagedHook>, HooksDError> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                files.insert(n.to_string(), p);
            }
        }
    }
    let mut out = Vec::new();
    for path in files.values() {
        out.extend(load_file(path, annotations)?);
    }
    Ok(out)
}

fn load_file(
    path: &Path,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<StagedHook>, HooksDError> {
    let invalid = |why: String| HooksDError::Invalid {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|source| HooksDError::Read {
        path: path.to_owned(),
        source,
    })?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if doc["version"] != "1.0.0" {
        return Err(invalid(format!(
            "version {} is not \"1.0.0\"",
            doc["version"]
        )));
    }
    let hook = doc["hook"].clone();
    if !hook["path"].is_string() {
        return Err(invalid("hook.path is missing".into()));
    }
    let stages: Vec<String> = doc["stages"]
        .as_array()
        .ok_or_else(|| invalid("stages is missing".into()))?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    if !matches(&doc["when"], annotations).map_err(invalid)? {
        return Ok(Vec::new());
    }
    Ok(stages
        .into_iter()
        .map(|stage| StagedHook {
            stage,
            file: path.to_owned(),
            hook: hook.clone(),
        })
        .collect())
}

/// podman's `when`: `always`, or every annotation pattern pair matched by some
/// annotation. Conditions this launcher cannot evaluate (`commands`,
/// `hasBindMounts`) make the hook not apply.
fn matches(when: &Value, annotations: &BTreeMap<String, String>) -> Result<bool, String> {
    if when["always"] == Value::Bool(true) {
        return Ok(true);
    }
    let Some(pats) = when["annotations"].as_object() else {
        return Ok(false);
    };
    if pats.is_empty() {
        return Ok(false);
    }
    for (kp, vp) in pats {
        let kr = Regex::new(kp).map_err(|e| format!("annotation key regex {kp:?}: {e}"))?;
        let vs = vp.as_str().unwrap_or("");
        let vr = Regex::new(vs).map_err(|e| format!("annotation value regex {vs:?}: {e}"))?;
        if !annotations
            .iter()
            .any(|(k, v)| kr.is_match(k) && vr.is_match(v))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, key: &str, stage: &str) {
        let doc = serde_json::json!({
            "version": "1.0.0",
            "hook": {"path": format!("/x/{name}"), "env": ["A=1"]},
            "when": {"annotations": {key: "^true$"}},
            "stages": [stage],
        });
        std::fs::write(dir.join(format!("{name}.json")), doc.to_string()).unwrap();
    }

    #[test]
    fn selects_by_annotation_in_file_order_and_later_dirs_override() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write(
            a.path(),
            "05-mpi",
            r"^com\.hooks\.mpi\.enabled$",
            "createRuntime",
        );
        write(
            a.path(),
            "01-glibc",
            r"^com\.hooks\.glibc\.enabled$",
            "createRuntime",
        );
        write(
            a.path(),
            "09-gpu",
            r"^com\.hooks\.gpu\.enabled$",
            "createRuntime",
        );
        write(
            b.path(),
            "05-mpi",
            r"^com\.hooks\.mpi\.enabled$",
            "createContainer",
        );
        let ann: BTreeMap<String, String> = [
            ("com.hooks.mpi.enabled".to_string(), "true".to_string()),
            ("com.hooks.glibc.enabled".to_string(), "true".to_string()),
        ]
        .into();
        let got = load(&[a.path().into(), b.path().into()], &ann).unwrap();
        let names: Vec<(String, String)> = got
            .iter()
            .map(|h| {
                (
                    h.hook["path"].as_str().unwrap().to_string(),
                    h.stage.clone(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("/x/01-glibc".to_string(), "createRuntime".to_string()),
                ("/x/05-mpi".to_string(), "createContainer".to_string()),
            ]
        );
    }

    #[test]
    fn invalid_file_is_an_error_naming_it() {
        let a = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("bad.json"), "{").unwrap();
        let e = load(&[a.path().into()], &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("bad.json"), "{e}");
    }

    #[test]
    fn value_must_match_too() {
        let a = tempfile::tempdir().unwrap();
        write(
            a.path(),
            "05-mpi",
            r"^com\.hooks\.mpi\.enabled$",
            "createRuntime",
        );
        let ann: BTreeMap<String, String> =
            [("com.hooks.mpi.enabled".to_string(), "false".to_string())].into();
        assert!(load(&[a.path().into()], &ann).unwrap().is_empty());
    }
}
