//! Checks a podman hooks.d file (version 1.0.0) with a real JSON parser: what
//! `hpc-hooks-configure` runs on each file it writes (`glibc-hook check-hooks-json FILE`),
//! since one invalid file stops podman from starting any container.

use std::path::Path;

use serde_json::Value;

/// Stages a hooks.d file may name (OCI runtime spec 1.0.2 and podman's prestart).
pub const STAGES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Largest hooks.d file accepted.
const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HooksJsonError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid hooks.d file: {why}")]
    Invalid { path: String, why: String },
}

fn strings(v: &Value, what: &str) -> Result<(), String> {
    match v {
        Value::Null => Ok(()),
        Value::Array(a) if a.iter().all(Value::is_string) => Ok(()),
        _ => Err(format!("{what} must be an array of strings")),
    }
}

/// Checks the text of a hooks.d file; the error says which property is wrong.
pub fn check_text(text: &str) -> Result<(), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !doc.is_object() {
        return Err("the document must be a JSON object".into());
    }
    if doc["version"] != "1.0.0" {
        return Err(format!("version is {}, not \"1.0.0\"", doc["version"]));
    }
    let hook = &doc["hook"];
    if !hook.is_object() {
        return Err("hook must be an object".into());
    }
    match hook["path"].as_str() {
        Some(p) if p.starts_with('/') => {}
        _ => return Err("hook.path must be an absolute path".into()),
    }
    strings(&hook["args"], "hook.args")?;
    strings(&hook["env"], "hook.env")?;
    if let Some(env) = hook["env"].as_array() {
        for e in env.iter().filter_map(Value::as_str) {
            if !e.contains('=') {
                return Err(format!("hook.env entry {e:?} is not KEY=VALUE"));
            }
        }
    }
    match &hook["timeout"] {
        Value::Null => {}
        t if t.as_u64().is_some_and(|n| n > 0) => {}
        _ => return Err("hook.timeout must be a positive integer".into()),
    }
    match doc["when"].as_object() {
        Some(w) if !w.is_empty() => {}
        _ => return Err("when must be an object with at least one condition".into()),
    }
    let stages = doc["stages"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("stages must be a non-empty array")?;
    for s in stages {
        match s.as_str() {
            Some(s) if STAGES.contains(&s) => {}
            _ => return Err(format!("stage {s} is not one of {}", STAGES.join(", "))),
        }
    }
    Ok(())
}

/// Reads and checks one hooks.d file.
pub fn check_file(path: &Path) -> Result<(), HooksJsonError> {
    use std::io::Read;
    let read = |source| HooksJsonError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(read)?;
    check_text(&text).map_err(|why| HooksJsonError::Invalid {
        path: path.display().to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"version":"1.0.0","hook":{"path":"/usr/libexec/hpc-hooks/mpi-hook",
        "args":["mpi-hook","--log-file","/var/log/hpc-hooks.log"],"env":["MPI_LIBS=/a"],"timeout":30},
        "when":{"annotations":{"^a$":"^true$"}},"stages":["createRuntime"]}"#;

    #[test]
    fn good_file() {
        check_text(GOOD).unwrap();
    }

    #[test]
    fn bad_files() {
        let e = |t: &str| check_text(t).unwrap_err();
        assert!(e("{").starts_with("not JSON: "));
        assert_eq!(e("[]"), "the document must be a JSON object");
        assert_eq!(
            e(&GOOD.replace("1.0.0", "0.1.0")),
            "version is \"0.1.0\", not \"1.0.0\""
        );
        assert_eq!(
            e(&GOOD.replace("\"/usr/libexec", "\"usr/libexec")),
            "hook.path must be an absolute path"
        );
        assert_eq!(
            e(&GOOD.replace("\"MPI_LIBS=/a\"", "\"MPI_LIBS\"")),
            "hook.env entry \"MPI_LIBS\" is not KEY=VALUE"
        );
        assert_eq!(
            e(&GOOD.replace("\"env\":[", "\"env\":[1,")),
            "hook.env must be an array of strings"
        );
        assert_eq!(
            e(&GOOD.replace("30", "0")),
            "hook.timeout must be a positive integer"
        );
        assert_eq!(
            e(&GOOD.replace("createRuntime", "later")),
            "stage \"later\" is not one of prestart, createRuntime, createContainer, startContainer, poststart, poststop"
        );
        assert_eq!(
            e(&GOOD.replace("{\"annotations\":{\"^a$\":\"^true$\"}}", "{}")),
            "when must be an object with at least one condition"
        );
    }
}
