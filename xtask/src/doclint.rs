//! Checks of the Markdown documentation (`README.md`, `docs/*.md`) against the tree and
//! the command-line definitions: relative links and their anchors resolve, `docs/...` and
//! other repository paths exist, and every `--flag` the text gives one of the binaries (or
//! scripts) is in that binary's `--help`. Run by `xtask/tests/docs_links.rs`.
//!
//! Which binary a flag belongs to: in a code block line or an inline code span, the last
//! binary or script named before the flag (`srun --mpi=pmi2 hpc-rank --runtime podman`:
//! `--mpi` is srun's and not checked, `--runtime` is hpc-rank's); a code span that starts
//! with a flag, in a paragraph or table, belongs to the binary named by the nearest
//! heading (the section, else its parents, else the title) that names exactly one binary.
//! Flags of other programs (podman, srun) must therefore be written after their program.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}
/// A long flag.
static FLAG_RE: LazyLock<Regex> = LazyLock::new(|| re(r"--[a-z0-9][a-z0-9-]*"));
/// A shell `case` pattern of option names: `--bin-dir)`, `-h|--help)`.
static CASE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?m)^\s*((?:--[a-z0-9-]+\|?|-[a-z]\|?)+)\)"));
/// A relative path that starts with a top-level directory name.
static PATH_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(^|[^A-Za-z0-9_./-])((?:\.ci|[a-z][a-z0-9-]*)/[A-Za-z0-9_./-]*)"));
/// A Markdown link's target.
static LINK_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\]\(([^)\s]+)\)"));
/// Any Markdown link target, to blank it out.
static LINK_ANY_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\]\([^)]*\)"));
/// An inline code span.
static SPAN_RE: LazyLock<Regex> = LazyLock::new(|| re(r"`([^`]+)`"));
/// A `docs/...` path in prose.
static DOCS_PATH_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(^|[\s(])(docs/[A-Za-z0-9_./-]+)"));

/// One problem found in a documentation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the repository root.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and what to change.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The flags of one program: those its `--help` shows, and hidden ones (accepted only on
/// a line that says the flag is hidden or for tests).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Long flags shown by `--help` (of the command or one of its subcommands).
    pub visible: BTreeSet<String>,
    /// Long flags that exist but are hidden from `--help`.
    pub hidden: BTreeSet<String>,
}

/// Program name (as written in the docs) -> its flags.
pub type FlagMap = BTreeMap<String, Flags>;

/// Errors reading the files to check.
#[derive(Debug, thiserror::Error)]
pub enum DocLintError {
    /// A documentation file or script could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<String, DocLintError> {
    std::fs::read_to_string(path).map_err(|source| DocLintError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn long_flags(text: &str) -> BTreeSet<String> {
    FLAG_RE
        .find_iter(text)
        .map(|m| m.as_str().trim_end_matches('-').to_string())
        .collect()
}

fn command_flags(cmd: &clap::Command, flags: &mut Flags) {
    let mut cmd = cmd.clone();
    cmd.build();
    flags
        .visible
        .extend(long_flags(&cmd.render_long_help().to_string()));
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            if arg.is_hide_set() {
                flags.hidden.insert(format!("--{long}"));
            }
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() != "help" {
            command_flags(sub, flags);
        }
    }
}

/// The flags of the five binaries (from their clap definitions, as `--help` renders them)
/// and of the shell scripts a reader runs (the `--flag)` cases of their option parsers).
pub fn flag_map(root: &Path) -> Result<FlagMap, DocLintError> {
    let mut map = FlagMap::new();
    for bin in crate::docs::binaries() {
        let mut flags = Flags::default();
        command_flags(&bin.command, &mut flags);
        flags.visible.insert("--help".into());
        flags.visible.insert("--version".into());
        flags.hidden.retain(|f| !flags.visible.contains(f));
        map.insert(bin.name.to_string(), flags);
    }
    for (name, rel) in [
        ("install.sh", "packaging/install.sh"),
        ("hpc-hooks-configure", "packaging/hpc-hooks-configure"),
        ("build-deb.sh", "packaging/deb/build-deb.sh"),
    ] {
        let text = read(&root.join(rel))?;
        let mut flags = Flags::default();
        for c in CASE_RE.captures_iter(&text) {
            flags.visible.extend(long_flags(&c[1]));
        }
        map.insert(name.to_string(), flags);
    }
    Ok(map)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (duplicates get `-1`, `-2`, ...).
pub fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let s = slug(title);
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// Top-level directories whose paths, written in code, must exist in the tree.
const REPO_DIRS: &[&str] = &[
    "packaging/",
    "tests/",
    "demo/",
    "hooks/",
    "launcher/",
    "cdi-gen/",
    "specs/",
    "xtask/",
    "fuzz/",
    "docs/",
    ".ci/",
];

/// The program a token names, if it is one of `flags`' keys (`/usr/bin/cdi-gen`,
/// `ExecStart=/usr/bin/cdi-gen`, `packaging/install.sh`, `hpc-rank:`).
fn program_of<'a>(token: &str, flags: &'a FlagMap) -> Option<&'a str> {
    let t = token.trim_matches(|c: char| "`\"'()[]:;,".contains(c));
    let base = t.rsplit(['/', '=']).next().unwrap_or(t);
    flags.get_key_value(base).map(|(k, _)| k.as_str())
}

/// The flag a token is, if any: `--name` up to `=`, `[`, `]`, `,`, `)`, `` ` ``.
fn flag_of(token: &str) -> Option<String> {
    let t = token.trim_start_matches(['[', '(', '`', '"', '\'']);
    if !t.starts_with("--") || t.len() < 3 {
        return None;
    }
    let end = t[2..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map(|i| i + 2)
        .unwrap_or(t.len());
    let f = t[..end].trim_end_matches('-');
    (f.len() > 2).then(|| f.to_string())
}

struct Checker<'a> {
    root: &'a Path,
    flags: &'a FlagMap,
    file: PathBuf,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, line: usize, message: String) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            message,
        });
    }

    fn check_flag(&mut self, line: usize, prog: &str, flag: &str, context: &str) {
        let Some(f) = self.flags.get(prog) else {
            return;
        };
        if f.visible.contains(flag) {
            return;
        }
        let lc = context.to_lowercase();
        if f.hidden.contains(flag) && (lc.contains("hidden") || lc.contains("tests only")) {
            return;
        }
        let why = if f.hidden.contains(flag) {
            "is hidden from its --help (say \"hidden\" or \"tests only\" on that line)"
        } else {
            "is not in its --help"
        };
        self.problem(
            line,
            format!("`{flag}` is given to {prog}, but {why}: fix the flag, or write the program it belongs to before it"),
        );
    }

    /// Flags after a program name in one command line or code span.
    fn check_command(&mut self, line: usize, text: &str, context: &str) {
        let mut prog: Option<&str> = None;
        let mut prev = "";
        for token in text.split_whitespace() {
            if token.starts_with('#') {
                break;
            }
            // `cargo test -p cdi-gen`, `install.sh --bins cdi-gen`: a value, not a command.
            let is_value = ["-p", "--package", "--bin", "--bins"].contains(&prev);
            prev = token;
            if is_value {
                continue;
            }
            if ["|", "||", "&&", ";", "then", "do"].contains(&token) || token.ends_with(';') {
                prog = None;
                continue;
            }
            if let Some(p) = program_of(token, self.flags) {
                prog = Some(p);
                continue;
            }
            if let (Some(p), Some(f)) = (prog, flag_of(token)) {
                self.check_flag(line, p, &f, context);
            }
        }
    }

    fn check_paths(&mut self, line: usize, text: &str) {
        for c in PATH_RE.captures_iter(text) {
            let path = c[2].trim_end_matches(['.', ',', ':']);
            if !REPO_DIRS.iter().any(|d| path.starts_with(d)) {
                continue;
            }
            // Globs, brace lists and placeholders are not single paths.
            let rest = &text[c.get(2).map(|m| m.end()).unwrap_or(0)..];
            if rest.starts_with(['{', '*', '<', '$']) {
                continue;
            }
            if !self.root.join(path).exists() {
                self.problem(
                    line,
                    format!("path `{path}` does not exist in the repository (fix or remove it)"),
                );
            }
        }
    }

    fn check_links(&mut self, line: usize, text: &str, own: &BTreeSet<String>) {
        for c in LINK_RE.captures_iter(text) {
            let target = &c[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let anchors = if path.is_empty() {
                own.clone()
            } else {
                let dir = self
                    .root
                    .join(&self.file)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| self.root.to_path_buf());
                let full = dir.join(path);
                if !full.exists() {
                    self.problem(
                        line,
                        format!(
                            "link target `{target}` does not exist (relative to {})",
                            dir.strip_prefix(self.root).unwrap_or(&dir).display()
                        ),
                    );
                    continue;
                }
                if anchor.is_none() || !path.ends_with(".md") {
                    continue;
                }
                match std::fs::read_to_string(&full) {
                    Ok(t) => anchors(&t),
                    Err(e) => {
                        self.problem(line, format!("cannot read link target `{path}`: {e}"));
                        continue;
                    }
                }
            };
            if let Some(a) = anchor {
                if !anchors.contains(a) {
                    self.problem(
                        line,
                        format!("link `{target}`: no heading with the anchor `#{a}` there"),
                    );
                }
            }
        }
    }

    fn check_text(&mut self, text: &str) {
        let own = anchors(text);
        // Headings seen so far: (level, the one binary they name, if exactly one).
        let mut headings: Vec<(usize, Option<String>)> = Vec::new();
        let mut fence = false;
        let mut block: Vec<(usize, String)> = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let n = i + 1;
            let line = lines[i];
            if line.trim_start().starts_with("```") {
                fence = !fence;
                i += 1;
                continue;
            }
            if fence {
                // A command continued with `\` is one command.
                let mut cmd = line.to_string();
                let mut j = i;
                while cmd.ends_with('\\') && j + 1 < lines.len() {
                    cmd.pop();
                    j += 1;
                    cmd.push(' ');
                    cmd.push_str(lines[j]);
                }
                self.check_command(n, &cmd, &cmd);
                self.check_paths(n, &cmd);
                self.check_links(n, line, &own);
                i = j + 1;
                continue;
            }
            if line.starts_with('#') {
                let level = line.chars().take_while(|c| *c == '#').count();
                let named: BTreeSet<&str> = line
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
                    .filter_map(|w| self.flags.get_key_value(w).map(|(k, _)| k.as_str()))
                    .collect();
                let one = if named.len() == 1 {
                    named.iter().next().map(|s| s.to_string())
                } else {
                    None
                };
                headings.retain(|(l, _)| *l < level);
                headings.push((level, one));
                self.check_links(n, line, &own);
                i += 1;
                continue;
            }
            // A paragraph (or table row) is checked as one piece: code spans may wrap.
            let table = line.trim_start().starts_with('|');
            block.clear();
            block.push((n, line.to_string()));
            let mut j = i;
            while !table
                && j + 1 < lines.len()
                && !lines[j + 1].trim().is_empty()
                && !lines[j + 1].starts_with('#')
                && !lines[j + 1].trim_start().starts_with("```")
                && !lines[j + 1].trim_start().starts_with('|')
            {
                j += 1;
                block.push((j + 1, lines[j].to_string()));
            }
            let joined: String = block
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let section = headings.iter().rev().find_map(|(_, b)| b.clone());
            for m in SPAN_RE.find_iter(&joined) {
                let span = &m.as_str()[1..m.as_str().len() - 1];
                let at = block[0].0 + joined[..m.start()].matches('\n').count();
                let context = joined
                    .lines()
                    .nth(at - block[0].0)
                    .unwrap_or_default()
                    .to_string();
                if span.trim_start().starts_with("--") {
                    if let Some(prog) = section.clone() {
                        let mut cmd = format!("{prog} {span}");
                        // A flag span names one flag (and its value), not a command line.
                        if let Some(f) = flag_of(span.trim_start()) {
                            cmd = format!("{prog} {f}");
                        }
                        self.check_command(at, &cmd, &context);
                    }
                } else {
                    self.check_command(at, &span.replace('\n', " "), &context);
                }
                self.check_paths(at, span);
            }
            for (ln, l) in &block {
                self.check_links(*ln, l, &own);
                // docs/... written outside code spans.
                let outside = SPAN_RE.replace_all(l, " ");
                let outside = LINK_ANY_RE.replace_all(&outside, "]");
                for c in DOCS_PATH_RE.captures_iter(&outside) {
                    let p = c[2].trim_end_matches(['.', ',', ':']);
                    if !self.root.join(p).exists() {
                        self.problem(*ln, format!("path `{p}` does not exist in the repository"));
                    }
                }
            }
            i = j + 1;
        }
    }
}

/// Checks the Markdown text of `file` (relative to `root`) and returns the problems.
pub fn check_text(root: &Path, file: &Path, text: &str, flags: &FlagMap) -> Vec<Problem> {
    let mut c = Checker {
        root,
        flags,
        file: file.to_path_buf(),
        problems: Vec::new(),
    };
    c.check_text(text);
    c.problems
}

/// The documentation files: `README.md`, every `docs/*.md` and the crate READMEs that
/// point into docs/ (`launcher/`, `cdi-gen/`, `hooks/gpu-hook/`), relative to `root`.
pub fn doc_files(root: &Path) -> Result<Vec<PathBuf>, DocLintError> {
    let mut files = vec![PathBuf::from("README.md")];
    let dir = root.join("docs");
    let entries = std::fs::read_dir(&dir).map_err(|source| DocLintError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut docs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter_map(|p| p.file_name().map(|n| Path::new("docs").join(n)))
        .collect();
    docs.sort();
    files.extend(docs);
    // The crate READMEs that point into docs/.
    for readme in [
        "launcher/README.md",
        "cdi-gen/README.md",
        "hooks/gpu-hook/README.md",
    ] {
        if root.join(readme).exists() {
            files.push(PathBuf::from(readme));
        }
    }
    Ok(files)
}

/// Checks `README.md` and `docs/*.md` under `root`.
pub fn check_repo(root: &Path) -> Result<Vec<Problem>, DocLintError> {
    let flags = flag_map(root)?;
    let mut problems = Vec::new();
    for file in doc_files(root)? {
        let text = read(&root.join(&file))?;
        problems.extend(check_text(root, &file, &text, &flags));
    }
    Ok(problems)
}
