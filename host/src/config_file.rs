//! The node's configuration file (`alga-edge.toml`, `--config` / `ALGA_CONFIG`).
//!
//! The file holds `serve` settings in sections by concern: each section is an argument's help
//! heading (`[limits]`, `[egress]`, …) and each key the argument's name (`timeout_ms`). The
//! file's values become the arguments' defaults, so clap's own precedence gives flag >
//! environment > file > built-in default, and clap's value parsers check file values exactly
//! as they check flags. Everything here is derived from the clap `Command`: a setting added to
//! `serve` is a file key, an example entry and a `config print` line without further code.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// What was wrong with a configuration file; every variant names the file, and the line and key
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}: not valid TOML: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the line).
        message: String,
    },
    /// A section, key or value the node does not accept.
    #[error("{}:{line}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// One setting a file gave.
#[derive(Debug, Clone, PartialEq)]
pub struct FileValue {
    /// 1-based line of its key.
    pub line: usize,
    /// The values, as a flag would give them (one, or several for a repeatable setting).
    pub values: Vec<String>,
}

/// A parsed, checked configuration file: setting id → value.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    /// The file it came from.
    pub path: PathBuf,
    /// By argument id (the key).
    pub settings: BTreeMap<String, FileValue>,
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (or unset).
    Default,
    /// The configuration file.
    File,
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::File => "file",
            Self::Env => "env",
            Self::Flag => "flag",
        }
    }
}

/// How a setting is written in TOML, from its value parser's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Float,
    Boolean,
    String,
}

impl Kind {
    fn of(arg: &Arg) -> Self {
        let id = arg.get_value_parser().type_id();
        let is = |t: TypeId| id == t;
        if [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<i64>(),
            TypeId::of::<usize>(),
        ]
        .into_iter()
        .any(is)
        {
            Self::Integer
        } else if is(TypeId::of::<f64>()) {
            Self::Float
        } else if is(TypeId::of::<bool>()) {
            Self::Boolean
        } else {
            Self::String
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::Integer => "integers",
            Self::Float => "numbers",
            Self::Boolean => "booleans",
            Self::String => "strings",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Integer => "an integer",
            Self::Float => "a number",
            Self::Boolean => "true or false",
            Self::String => "a string",
        }
    }
}

/// `command` as clap completes it before parsing (flags get their value parsers), in the
/// order its arguments were declared. Pass the command as declared, not one that
/// [`ConfigFile::apply`] changed: changing an argument moves it to the end.
fn built(command: &Command) -> Command {
    let mut command = command.clone();
    command.build();
    command
}

/// The file's section of `arg`: its help heading, lower-case (`None`: not a file setting).
pub fn section_of(arg: &Arg) -> Option<String> {
    arg.get_help_heading()
        .map(|heading| heading.to_ascii_lowercase().replace(' ', "_"))
}

/// The settings a file may hold, in declaration order: every visible argument of `command`
/// with a help heading (hidden test knobs, `--config` itself and clap's help are not).
pub fn settings(command: &Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set() && !arg.is_positional() && section_of(arg).is_some())
}

/// Repeatable settings take an array.
fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append) || arg.get_value_delimiter().is_some()
}

/// Secrets are the arguments whose environment values `--help` hides; `config print` masks
/// them.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl ConfigFile {
    /// Reads and checks the file at `path` against `command`'s settings.
    pub fn load(path: &Path, command: &Command) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, command)
    }

    /// Parses `text` (the file at `path`) and checks every section, key and value: unknown
    /// ones, values of the wrong type and values the setting's parser refuses are errors
    /// naming the key and its line.
    pub fn parse(path: &Path, text: &str, command: &Command) -> Result<Self, ConfigError> {
        let command = &built(command);
        let document = DeTable::parse(text).map_err(|error| ConfigError::Syntax {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: line_of(text, offset),
            message,
        };
        let mut by_section: BTreeMap<String, Vec<&Arg>> = BTreeMap::new();
        for arg in settings(command) {
            by_section
                .entry(section_of(arg).expect("settings have sections"))
                .or_default()
                .push(arg);
        }
        let section_names = || by_section.keys().cloned().collect::<Vec<_>>().join(", ");
        let home_of = |key: &str| {
            settings(command)
                .find(|arg| arg.get_id().as_str() == key)
                .and_then(section_of)
        };

        let mut file = Self {
            path: path.to_owned(),
            settings: BTreeMap::new(),
        };
        for (section, table) in document.get_ref() {
            let DeValue::Table(table) = table.get_ref() else {
                let key = section.get_ref();
                let message = match home_of(key) {
                    Some(home) => format!("`{key}` belongs in the [{home}] section"),
                    None => format!(
                        "unknown setting `{key}` outside any section (sections: {})",
                        section_names()
                    ),
                };
                return Err(invalid(section.span().start, message));
            };
            let Some(args) = by_section.get(section.get_ref().as_ref()) else {
                return Err(invalid(
                    section.span().start,
                    format!(
                        "unknown section [{}] (sections: {})",
                        section.get_ref(),
                        section_names()
                    ),
                ));
            };
            for (key, value) in table {
                let name = key.get_ref();
                let Some(arg) = args.iter().find(|arg| arg.get_id().as_str() == name) else {
                    let message = match home_of(name) {
                        Some(home) => format!(
                            "`{}.{name}` is not a setting: `{name}` belongs in [{home}]",
                            section.get_ref()
                        ),
                        None => format!("unknown key `{}.{name}`", section.get_ref()),
                    };
                    return Err(invalid(key.span().start, message));
                };
                let full = format!("{}.{name}", section.get_ref());
                let values = file_values(arg, value.get_ref()).map_err(|expected| {
                    invalid(value.span().start, format!("`{full}` must be {expected}"))
                })?;
                if Kind::of(arg) != Kind::Boolean {
                    check_values(arg, &values).map_err(|error| {
                        invalid(
                            value.span().start,
                            format!("`{full}`: {}", clap_message(&error)),
                        )
                    })?;
                }
                file.settings.insert(
                    name.to_string(),
                    FileValue {
                        line: line_of(text, key.span().start),
                        values,
                    },
                );
            }
        }
        Ok(file)
    }

    /// `command` with the file's values as its arguments' defaults: a flag or an environment
    /// variable still overrides each.
    pub fn apply(&self, mut command: Command) -> Command {
        for (id, value) in &self.settings {
            // clap keeps defaults as `'static` strings: these live for the process anyway.
            let values: Vec<clap::builder::OsStr> = value
                .values
                .iter()
                .map(|v| clap::builder::OsStr::from(&*v.clone().leak()))
                .collect();
            command = command.mut_arg(id.as_str(), |arg| arg.default_values(values));
        }
        command
    }
}

/// Runs `values` through `arg`'s own value parser, as if given as flags (the parser itself is
/// not public API), so a file value is refused exactly when the flag would be.
fn check_values(arg: &Arg, values: &[String]) -> Result<(), clap::Error> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let probe = arg.clone().env(None::<&str>).required(false);
    let mut argv = vec!["alga-edge".to_owned()];
    argv.extend(values.iter().map(|v| format!("--{long}={v}")));
    Command::new("alga-edge")
        .arg(probe)
        .try_get_matches_from(argv)
        .map(drop)
}

/// The strings a flag would carry for `value`, or what `arg` expects instead.
fn file_values(arg: &Arg, value: &DeValue<'_>) -> Result<Vec<String>, String> {
    let kind = Kind::of(arg);
    if is_list(arg) {
        return match value {
            DeValue::Array(items) => items
                .iter()
                .map(|item| scalar(kind, item.get_ref()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("an array of {}", kind.plural())),
            other => scalar(kind, other)
                .map(|one| vec![one])
                .ok_or_else(|| format!("{} or an array of them", kind.describe())),
        };
    }
    scalar(kind, value)
        .map(|one| vec![one])
        .ok_or_else(|| kind.describe().to_owned())
}

/// One TOML scalar as a flag's string, if it is of `kind`.
fn scalar(kind: Kind, value: &DeValue<'_>) -> Option<String> {
    match (kind, value) {
        (Kind::Integer, DeValue::Integer(n)) => Some(integer_text(n)?),
        (Kind::Float, DeValue::Integer(n)) => Some(integer_text(n)?),
        (Kind::Float, DeValue::Float(f)) => Some(f.as_str().replace('_', "")),
        (Kind::Boolean, DeValue::Boolean(b)) => Some(b.to_string()),
        (Kind::String, DeValue::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// A TOML integer in decimal (TOML allows `1_000` and hex, octal, binary forms).
fn integer_text(n: &toml::de::DeInteger<'_>) -> Option<String> {
    let digits = n.as_str().replace('_', "");
    let radix = n.radix();
    if radix == 10 {
        return Some(digits);
    }
    let (negative, digits) = match digits.strip_prefix('-') {
        Some(rest) => (true, rest.to_owned()),
        None => (false, digits.trim_start_matches('+').to_owned()),
    };
    let magnitude = i128::from_str_radix(&digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude }.to_string())
}

/// A clap error's message without its `error: ` prefix and usage lines.
fn clap_message(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}

/// The effective configuration of `command` as parsed into `matches`, as a TOML file: every
/// setting with its value (secrets masked) and where it came from. Unset settings are
/// commented out. Feeding the output (secrets aside) back as a file gives the same node.
pub fn print(command: &Command, matches: &ArgMatches, file: Option<&ConfigFile>) -> String {
    let command = &built(command);
    let mut out = String::new();
    if let Some(file) = file {
        let _ = writeln!(out, "# configuration file: {}", file.path.display());
    }
    let mut section = None;
    for arg in settings(command) {
        let id = arg.get_id().as_str();
        let here = section_of(arg);
        if here != section {
            let _ = writeln!(out, "\n[{}]", here.as_deref().unwrap_or_default());
            section = here;
        }
        let origin = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Origin::Flag,
            Some(ValueSource::EnvVariable) => Origin::Env,
            _ if file.is_some_and(|f| f.settings.contains_key(id)) => Origin::File,
            _ => Origin::Default,
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if values.is_empty() {
            let _ = writeln!(out, "# {id} =  # unset ({})", origin.as_str());
            continue;
        }
        let rendered = if is_secret(arg) {
            "\"***\"".to_owned()
        } else {
            toml_value(arg, &values)
        };
        let _ = writeln!(out, "{id} = {rendered}  # {}", origin.as_str());
    }
    out
}

/// `values` of `arg` written as TOML.
fn toml_value(arg: &Arg, values: &[String]) -> String {
    let kind = Kind::of(arg);
    let one = |v: &String| match kind {
        Kind::Integer | Kind::Float | Kind::Boolean => v.clone(),
        Kind::String => toml::Value::String(v.clone()).to_string(),
    };
    if is_list(arg) {
        format!(
            "[{}]",
            values.iter().map(one).collect::<Vec<_>>().join(", ")
        )
    } else {
        one(&values[0])
    }
}

/// An annotated example file for `command`: every setting in its section with its help text,
/// its environment variable and flag, and its default (settings with none are commented out).
pub fn example(command: &Command) -> String {
    let command = &built(command);
    let mut out = String::from(
        "# alga-edge.toml: every `alga-edge serve` setting, in sections by concern.\n\
         # Start a node with `alga-edge serve --config alga-edge.toml` (or ALGA_CONFIG).\n\
         # Environment variables and flags override the values here; unknown keys are refused.\n\
         # `alga-edge config print` shows the effective values and where each came from.\n\
         # This file is generated by `alga-edge config example`; the test suite checks it.\n",
    );
    let mut section = None;
    for arg in settings(command) {
        let here = section_of(arg);
        if here != section {
            let _ = writeln!(out, "\n[{}]", here.as_deref().unwrap_or_default());
            section = here;
        }
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|help| help.to_string())
            .unwrap_or_default();
        out.push('\n');
        for line in wrap(&help, 92) {
            let _ = writeln!(out, "# {line}");
        }
        let mut names = Vec::new();
        if let Some(long) = arg.get_long() {
            names.push(format!("--{long}"));
        }
        if let Some(env) = arg.get_env() {
            names.push(env.to_string_lossy().into_owned());
        }
        let _ = writeln!(out, "# ({})", names.join(", "));
        let id = arg.get_id().as_str();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if defaults.is_empty() {
            let placeholder = match Kind::of(arg) {
                _ if is_list(arg) => "[]".to_owned(),
                Kind::String => "\"\"".to_owned(),
                _ => String::new(),
            };
            let _ = writeln!(out, "# {id} = {placeholder}");
        } else {
            let _ = writeln!(out, "{id} = {}", toml_value(arg, &defaults));
        }
    }
    out
}

/// `text`'s words in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command, value_parser};

    fn command() -> Command {
        Command::new("serve")
            .next_help_heading("Limits")
            .arg(
                Arg::new("timeout_ms")
                    .long("timeout-ms")
                    .env("T_TIMEOUT_MS")
                    .help("Deadline.")
                    .default_value("5000")
                    .value_parser(value_parser!(u64).range(1..)),
            )
            .arg(
                Arg::new("rate")
                    .long("rate")
                    .help("Rate.")
                    .default_value("2.5")
                    .value_parser(value_parser!(f64)),
            )
            .next_help_heading("Node")
            .arg(
                Arg::new("component")
                    .long("component")
                    .help("Components.")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("token")
                    .long("token")
                    .env("T_TOKEN")
                    .hide_env_values(true)
                    .help("Secret."),
            )
            .arg(
                Arg::new("quiet")
                    .long("quiet")
                    .help("Quiet.")
                    .action(ArgAction::SetTrue),
            )
    }

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("node.toml"), text, &command())
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_sections_and_typed_values() {
        let file = parse(
            "[limits]\ntimeout_ms = 0x10\nrate = 3\n\n[node]\ncomponent = [\"a=x\", \"b=y\"]\n\
             token = \"s3cret\"\nquiet = true\n",
        )
        .unwrap();
        assert_eq!(file.settings["timeout_ms"].values, ["16"]);
        assert_eq!(file.settings["timeout_ms"].line, 2);
        assert_eq!(file.settings["rate"].values, ["3"]);
        assert_eq!(file.settings["component"].values, ["a=x", "b=y"]);
        assert_eq!(file.settings["quiet"].values, ["true"]);
    }

    #[test]
    fn names_the_key_and_line_of_every_mistake() {
        assert_eq!(
            error("[limits]\n\ntimeot_ms = 1\n"),
            "node.toml:3: unknown key `limits.timeot_ms`"
        );
        assert_eq!(
            error("[node]\ntimeout_ms = 1\n"),
            "node.toml:2: `node.timeout_ms` is not a setting: `timeout_ms` belongs in [limits]"
        );
        assert_eq!(
            error("timeout_ms = 1\n"),
            "node.toml:1: `timeout_ms` belongs in the [limits] section"
        );
        assert_eq!(
            error("[limit]\ntimeout_ms = 1\n"),
            "node.toml:1: unknown section [limit] (sections: limits, node)"
        );
        assert_eq!(
            error("[limits]\ntimeout_ms = \"soon\"\n"),
            "node.toml:2: `limits.timeout_ms` must be an integer"
        );
        let range = error("[limits]\nrate = 1\ntimeout_ms = 0\n");
        assert!(
            range.starts_with("node.toml:3: `limits.timeout_ms`: invalid value '0'"),
            "{range}"
        );
        assert_eq!(
            error("[node]\ncomponent = [1]\n"),
            "node.toml:2: `node.component` must be an array of strings"
        );
        assert!(error("[limits\n").starts_with("node.toml: not valid TOML"));
    }

    #[test]
    fn file_values_sit_under_env_and_flags_and_print_says_whence() {
        let file =
            parse("[limits]\ntimeout_ms = 700\nrate = 9.5\n[node]\ntoken = \"s3cret\"\n").unwrap();
        let matches = file
            .apply(command())
            .try_get_matches_from(["serve", "--rate", "1.5"])
            .unwrap();
        assert_eq!(matches.get_one::<u64>("timeout_ms"), Some(&700));
        assert_eq!(matches.get_one::<f64>("rate"), Some(&1.5));
        let printed = print(&command(), &matches, Some(&file));
        assert!(
            printed.find("[limits]") < printed.find("[node]"),
            "declared order: {printed}"
        );
        assert!(printed.contains("timeout_ms = 700  # file\n"), "{printed}");
        assert!(printed.contains("rate = 1.5  # flag\n"), "{printed}");
        assert!(printed.contains("token = \"***\"  # file\n"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("quiet = false  # default\n"), "{printed}");
        assert!(
            printed.contains("# component =  # unset (default)\n"),
            "{printed}"
        );
    }

    #[test]
    fn the_example_parses_back_and_covers_every_setting() {
        let text = example(&command());
        let file = parse(&text).unwrap();
        for arg in settings(&command()) {
            let id = arg.get_id().as_str();
            assert!(
                file.settings.contains_key(id) || text.contains(&format!("\n# {id} = ")),
                "{id} missing from\n{text}"
            );
        }
        assert_eq!(file.settings["timeout_ms"].values, ["5000"]);
        assert!(text.contains("# (--timeout-ms, T_TIMEOUT_MS)\n"), "{text}");
    }
}
