//! The config file: `--config rvdb.toml` (or `RVDB_CONFIG`), for every command (`serve`, `node`, `manager`,
//! `gateway`, `mcp-stdio`). A flat TOML table whose keys are the seed's `sys.config` keys (`mcp_port`,
//! `max_vector_stores`, `default_index_type`, `persistence_enabled`, `persistence_dir`, `backup_dir`,
//! `sync_interval`, `auto_backup_enabled`, `auto_backup_interval`, …) and every other setting: each flag that has
//! an `RVDB_<KEY>` environment variable has the key `<key>` (`--read-timeout` / `RVDB_READ_TIMEOUT` →
//! `read_timeout`). The keys are derived from the command line definition, so the file, the environment and the
//! flags can never disagree on a name.
//!
//! Precedence: file < environment < flags. The file's values are handed to clap as environment defaults for the
//! variables the environment does not set, so clap parses everything once, with one set of parsers. Every value
//! in the file is checked by the parser of its flag before that, and a key no command knows is an error: both
//! name the file and the key, never a silent fallback. `rvdb config show` prints what a command would run with
//! and where each value came from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use serde_json::{Value, json};

/// The settings that have a config key: `key` → (env variable, the flag's `Arg`), for `command` (None: all).
fn settings(command: Option<&str>) -> BTreeMap<String, (String, clap::Arg)> {
    let cli = crate::Cli::command();
    let mut out = BTreeMap::new();
    let mut add = |cmd: &clap::Command| {
        for arg in cmd.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else { continue };
            let Some(key) = env.strip_prefix("RVDB_") else { continue };
            if env == "RVDB_CONFIG" {
                continue;
            }
            out.entry(key.to_ascii_lowercase()).or_insert_with(|| (env.to_string(), arg.clone()));
        }
    };
    add(&cli);
    for sub in cli.get_subcommands() {
        if command.is_none_or(|c| c == sub.get_name()) {
            add(sub);
        }
    }
    out
}

/// A TOML value as the text its flag parses (lists comma-separated, as their flags take them).
fn as_arg_text(key: &str, value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            items.iter().map(|v| as_arg_text(key, v)).collect::<anyhow::Result<Vec<_>>>()?.join(",")
        }
        other => anyhow::bail!("key '{key}': a {} is not a setting value", other.type_str()),
    })
}

/// Checks `text` with the parser of `arg` (the flag's own): the error names the key.
fn check(path: &Path, key: &str, arg: &clap::Arg, text: &str) -> anyhow::Result<()> {
    let long = arg.get_long().unwrap_or(key);
    let probe = clap::Command::new("rvdb").no_binary_name(true).arg(arg.clone().env(None::<&str>).global(false));
    probe.try_get_matches_from([format!("--{long}={text}")]).map(|_| ()).map_err(|e| {
        let rendered = e.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let detail = first.strip_prefix("error: ").unwrap_or(first);
        anyhow::anyhow!("{}: key '{key}' = {text:?}: {detail}", path.display())
    })
}

/// The file given by `--config` / `--config=` in `args`, or `RVDB_CONFIG`.
pub fn config_path(args: &[String]) -> Option<PathBuf> {
    for (i, a) in args.iter().enumerate() {
        if a == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("RVDB_CONFIG").map(PathBuf::from)
}

/// What the config file set (env variable names), for `rvdb config show`.
static FROM_FILE: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();

/// Reads the config file named in `args` (if any), checks every key and value, and makes its values the
/// environment defaults of their flags. Runs before clap parses the command line and before any thread starts.
pub fn load(args: &[String]) -> anyhow::Result<()> {
    let Some(path) = config_path(args) else {
        let _ = FROM_FILE.set(BTreeSet::new());
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("the config file {} is not valid TOML", path.display()))?;
    let known = settings(None);
    let mut set = BTreeSet::new();
    for (key, value) in &table {
        let Some((env, arg)) = known.get(key) else {
            let near: Vec<&str> = known
                .keys()
                .filter(|k| k.contains(key.as_str()) || key.contains(k.as_str()))
                .map(String::as_str)
                .collect();
            let hint = if near.is_empty() { String::new() } else { format!(" (did you mean {}?)", near.join(", ")) };
            anyhow::bail!(
                "{}: unknown key '{key}'{hint}; the keys are: {}",
                path.display(),
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        let text = as_arg_text(key, value).with_context(|| path.display().to_string())?;
        check(&path, key, arg, &text)?;
        if std::env::var_os(env).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread exists, so nothing reads the
            // environment concurrently.
            unsafe { std::env::set_var(env, &text) };
            set.insert(env.clone());
        }
    }
    let _ = FROM_FILE.set(set);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The command whose settings to show.
    #[arg(long = "for", default_value = "serve", value_parser = ["serve", "node", "manager", "gateway", "mcp-stdio"])]
    pub command: String,
    /// Flags as that command would be given them (after `--`), e.g. `-- --mcp-port 9000`.
    #[arg(last = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// The settings a command would run with (JSON): each key's value and where it came from (flag, env, file,
    /// default). Secrets are not shown.
    Show(ShowArgs),
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    let ConfigCommand::Show(args) = cmd;
    let mut argv = vec!["rvdb".to_string(), args.command.clone()];
    argv.extend(args.args.iter().cloned());
    if args.command == "gateway"
        && !argv.iter().any(|a| a.starts_with("--manager"))
        && std::env::var_os("RVDB_MANAGER").is_none()
    {
        argv.extend(["--manager".to_string(), "(unset)".to_string()]);
    }
    let matches = crate::Cli::command().try_get_matches_from(&argv)?;
    let (_, sub) = matches.subcommand().context("no command")?;
    let from_file = FROM_FILE.get().cloned().unwrap_or_default();
    let mut out = serde_json::Map::new();
    for (key, (env, arg)) in settings(Some(&args.command)) {
        let id = arg.get_id().as_str();
        let source = match sub.value_source(id).or_else(|| matches.value_source(id)) {
            Some(clap::parser::ValueSource::CommandLine) => "flag",
            Some(clap::parser::ValueSource::EnvVariable) if from_file.contains(&env) => "file",
            Some(clap::parser::ValueSource::EnvVariable) => "env",
            Some(clap::parser::ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let secret = arg.is_hide_env_values_set() || key.contains("key") && !key.ends_with("_file");
        let raw: Vec<String> = sub
            .get_raw(id)
            .or_else(|| matches.get_raw(id))
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = if secret && !raw.is_empty() {
            json!("(set, not shown)")
        } else {
            match raw.len() {
                0 => Value::Null,
                1 => json!(raw[0]),
                _ => json!(raw),
            }
        };
        out.insert(key, json!({"value": value, "source": source, "env": env}));
    }
    println!("{}", serde_json::to_string_pretty(&json!({"command": args.command, "settings": out}))?);
    Ok(())
}
