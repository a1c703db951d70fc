//! Man pages (clap_mangen) and shell completions (clap_complete) for the five binaries,
//! built from their `cli::Cli` definitions, plus the sections clap has no field for:
//! ENVIRONMENT and EXIT STATUS from each command's `after_long_help`, and SEE ALSO.
//!
//! Layout under the output directory: `man/man8/{mpi-hook,glibc-hook,gpu-hook,cdi-gen}.8`,
//! `man/man1/hpc-rank.1`, one `<bin>-<sub>.<section>` page per subcommand, and
//! `completions/{bash/<bin>,zsh/_<bin>,fish/<bin>.fish}`. Pages are not compressed (the
//! packager gzips them) and carry no date, so that the output is reproducible.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// Errors while writing the docs.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    /// A directory could not be created or a file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// clap_mangen could not render a page.
    #[error("cannot render the man page {page}: {source}")]
    Render {
        page: String,
        source: std::io::Error,
    },
}

/// One installed binary: its name, man section and command-line definition.
pub struct Binary {
    /// Name of the executable (and of its man page).
    pub name: &'static str,
    /// Man section: "8" for the hooks and cdi-gen (run by root or the runtime), "1" for
    /// hpc-rank (run by users under srun or mpiexec).
    pub section: &'static str,
    /// Other binaries named in SEE ALSO, with their sections.
    pub see_also: &'static [(&'static str, &'static str)],
    /// The clap command, as the binary parses it.
    pub command: Command,
}

/// The five binaries of the package.
pub fn binaries() -> Vec<Binary> {
    vec![
        Binary {
            name: "mpi-hook",
            section: "8",
            see_also: &[
                ("hpc-hooks-configure", "8"),
                ("glibc-hook", "8"),
                ("hpc-rank", "1"),
            ],
            command: mpi_hook::cli::Cli::command(),
        },
        Binary {
            name: "glibc-hook",
            section: "8",
            see_also: &[
                ("hpc-hooks-configure", "8"),
                ("mpi-hook", "8"),
                ("gpu-hook", "8"),
            ],
            command: glibc_hook::cli::Cli::command(),
        },
        Binary {
            name: "gpu-hook",
            section: "8",
            see_also: &[
                ("hpc-hooks-configure", "8"),
                ("cdi-gen", "8"),
                ("glibc-hook", "8"),
            ],
            command: gpu_hook::cli::Cli::command(),
        },
        Binary {
            name: "cdi-gen",
            section: "8",
            see_also: &[("gpu-hook", "8")],
            command: cdi_gen::cli::Cli::command(),
        },
        Binary {
            name: "hpc-rank",
            section: "1",
            see_also: &[("mpi-hook", "8"), ("glibc-hook", "8")],
            command: hpc_rank::cli::Cli::command(),
        },
    ]
}

/// Writes every man page and completion file under `out`; returns the files written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>, DocsError> {
    let mut written = Vec::new();
    for bin in binaries() {
        for (file, content) in man_pages(&bin)? {
            let path = out
                .join("man")
                .join(format!("man{}", bin.section))
                .join(file);
            write_file(&path, &content)?;
            written.push(path);
        }
        for (file, content) in completions(&bin) {
            let path = out.join("completions").join(file);
            write_file(&path, &content)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn write_file(path: &Path, content: &[u8]) -> Result<(), DocsError> {
    let err = |source| DocsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, content).map_err(err)
}

/// The binary's page and one page per visible subcommand: `(file name, roff)`.
pub fn man_pages(bin: &Binary) -> Result<Vec<(String, Vec<u8>)>, DocsError> {
    let mut cmd = bin
        .command
        .clone()
        .name(bin.name)
        .bin_name(bin.name)
        .disable_help_subcommand(true);
    // Propagates global options into the subcommands and names them `<bin>-<sub>`.
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let extra = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|h| parse_extra(&h.to_string()))
        .unwrap_or_default();
    let subs: Vec<&Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let sub_names: Vec<String> = subs
        .iter()
        .map(|s| format!("{}-{}", bin.name, s.get_name()))
        .collect();

    let mut pages = Vec::new();
    let mut see_also: Vec<(String, &str)> =
        sub_names.iter().map(|n| (n.clone(), bin.section)).collect();
    see_also.extend(bin.see_also.iter().map(|(n, s)| (n.to_string(), *s)));
    let file = format!("{}.{}", bin.name, bin.section);
    let page = render_page(&cmd, bin.section, &version, &extra, &see_also);
    pages.push(
        page.map(|p| (file.clone(), p))
            .map_err(|source| DocsError::Render { page: file, source })?,
    );
    for (sub, name) in subs.iter().zip(&sub_names) {
        // After build() its display name is already `<bin>-<sub>`.
        let sub = (*sub).clone();
        let mut see_also: Vec<(String, &str)> = vec![(bin.name.to_string(), bin.section)];
        see_also.extend(
            sub_names
                .iter()
                .filter(|n| *n != name)
                .map(|n| (n.clone(), bin.section)),
        );
        // The parent's ENVIRONMENT (logging) applies to its subcommands too.
        let mut sub_extra = sub
            .get_after_long_help()
            .or_else(|| sub.get_after_help())
            .map(|h| parse_extra(&h.to_string()))
            .unwrap_or_default();
        for s in &extra {
            if !sub_extra.iter().any(|e| e.heading == s.heading) {
                sub_extra.push(s.clone());
            }
        }
        let file = format!("{name}.{}", bin.section);
        let page = render_page(&sub, bin.section, &version, &sub_extra, &see_also);
        pages.push(
            page.map(|p| (file.clone(), p))
                .map_err(|source| DocsError::Render { page: file, source })?,
        );
    }
    Ok(pages)
}

/// One page: clap_mangen's sections, then ENVIRONMENT (options that read a variable, and
/// the `Environment:` part of `after_long_help`), the other `after_long_help` sections,
/// VERSION (the binary's, also on subcommand pages) and SEE ALSO.
fn render_page(
    cmd: &Command,
    section: &str,
    version: &str,
    extra: &[Section],
    see_also: &[(String, &str)],
) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone())
        .section(section)
        .date(page_date())
        .source(format!("hpc-hooks {version}"))
        .manual("hpc-hooks");
    let mut roff = Roff::new();
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    if cmd.get_about().is_some() || cmd.get_long_about().is_some() {
        man.render_description_section(&mut buf)?;
    }
    man.render_options_section(&mut buf)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut buf)?;
    }

    let env_args: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_hide_env_set())
        .filter_map(|a| {
            let var = a.get_env()?.to_string_lossy().into_owned();
            let opt = a
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
            Some((var, opt))
        })
        .collect();
    let env_extra = extra.iter().find(|s| s.heading == "ENVIRONMENT");
    if !env_args.is_empty() || env_extra.is_some() {
        roff.control("SH", ["ENVIRONMENT"]);
        for (var, opt) in &env_args {
            roff.control("TP", []);
            roff.text([bold(var.as_str())]);
            roff.text([roman(format!(
                "Same as {opt} (see OPTIONS); the option wins when both are given."
            ))]);
        }
        if let Some(s) = env_extra {
            render_items(&mut roff, &s.items);
        }
    }
    for s in extra.iter().filter(|s| s.heading != "ENVIRONMENT") {
        roff.control("SH", [s.heading.as_str()]);
        render_items(&mut roff, &s.items);
    }
    if !version.is_empty() {
        roff.control("SH", ["VERSION"]);
        roff.text([roman(format!("v{version}"))]);
    }
    if !see_also.is_empty() {
        roff.control("SH", ["SEE ALSO"]);
        let mut line = Vec::new();
        for (i, (name, sec)) in see_also.iter().enumerate() {
            let sep = if i + 1 < see_also.len() { ", " } else { "" };
            line.push(bold(name.as_str()));
            line.push(roman(format!("({sec}){sep}")));
        }
        roff.text(line);
    }
    buf.write_all(roff.to_roff().as_bytes())?;
    // Each clap_mangen section starts with the same apostrophe preamble: keep the first.
    let text = String::from_utf8_lossy(&buf);
    let page = match text.split_once(ROFF_PREAMBLE) {
        Some((head, rest)) => format!("{head}{ROFF_PREAMBLE}{}", rest.replace(ROFF_PREAMBLE, "")),
        None => text.into_owned(),
    };
    Ok(page.into_bytes())
}

/// What the roff crate writes before every document.
const ROFF_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// The page date (`YYYY-MM-DD`): `SOURCE_DATE_EPOCH` when set (reproducible builds, as
/// dpkg-buildpackage sets it from debian/changelog), else today (UTC).
pub fn page_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn render_items(roff: &mut Roff, items: &[Item]) {
    for item in items {
        match item {
            Item::Entry { term, text } => {
                roff.control("TP", []);
                roff.text([bold(term.as_str())]);
                roff.text([roman(text.join(" "))]);
            }
            Item::Para(text) => {
                roff.control("PP", []);
                roff.text([roman(text.join(" "))]);
            }
        }
    }
}

/// A section of `after_long_help`: a line `Heading:` at column 0, then entries (a term
/// indented by 2 spaces, its description by 6) and paragraphs (lines indented by 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Upper-case man section name (`Environment:` gives `ENVIRONMENT`).
    pub heading: String,
    /// Entries and paragraphs, in order.
    pub items: Vec<Item>,
}

/// Part of a [`Section`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A term (variable name) and its description lines.
    Entry { term: String, text: Vec<String> },
    /// A paragraph's lines.
    Para(Vec<String>),
}

/// Splits `after_long_help` text into sections (text before any heading goes to NOTES).
pub fn parse_extra(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut after_blank = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            after_blank = true;
            continue;
        }
        if indent(line) == 0 && line.trim_end().ends_with(':') {
            sections.push(Section {
                heading: line.trim_end().trim_end_matches(':').to_uppercase(),
                items: Vec::new(),
            });
            after_blank = false;
            continue;
        }
        if sections.is_empty() {
            sections.push(Section {
                heading: "NOTES".into(),
                items: Vec::new(),
            });
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        let next_deeper = lines
            .get(i + 1)
            .is_some_and(|n| !n.trim().is_empty() && indent(n) > indent(line));
        let text = line.trim().to_string();
        if next_deeper && indent(line) <= 2 {
            section.items.push(Item::Entry {
                term: text,
                text: Vec::new(),
            });
        } else {
            match section.items.last_mut() {
                Some(Item::Entry { text: t, .. }) if indent(line) > 2 && !after_blank => {
                    t.push(text)
                }
                Some(Item::Para(p)) if !after_blank => p.push(text),
                _ => section.items.push(Item::Para(vec![text])),
            }
        }
        after_blank = false;
    }
    sections
}

/// bash, zsh and fish completions: `(path under completions/, script)`.
pub fn completions(bin: &Binary) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for (shell, file) in [
        (Shell::Bash, format!("bash/{}", bin.name)),
        (Shell::Zsh, format!("zsh/_{}", bin.name)),
        (Shell::Fish, format!("fish/{}.fish", bin.name)),
    ] {
        let mut cmd = bin.command.clone().name(bin.name);
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, bin.name, &mut buf);
        out.push((PathBuf::from(file), buf));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_sections_entries_and_paragraphs() {
        let s = parse_extra(
            "Environment:\n  VAR_A\n      First line\n      second line.\n  VAR_B\n      Only.\n\nExit status:\n  The rank's status; 125 when\n  it fails.",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].heading, "ENVIRONMENT");
        assert_eq!(
            s[0].items,
            vec![
                Item::Entry {
                    term: "VAR_A".into(),
                    text: vec!["First line".into(), "second line.".into()]
                },
                Item::Entry {
                    term: "VAR_B".into(),
                    text: vec!["Only.".into()]
                },
            ]
        );
        assert_eq!(s[1].heading, "EXIT STATUS");
        assert_eq!(
            s[1].items,
            vec![Item::Para(vec![
                "The rank's status; 125 when".into(),
                "it fails.".into()
            ])]
        );
    }

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn text_without_heading_goes_to_notes() {
        let s = parse_extra("Just a note.");
        assert_eq!(s[0].heading, "NOTES");
        assert_eq!(s[0].items, vec![Item::Para(vec!["Just a note.".into()])]);
    }
}
