//! Strict reading of the merged `config::Value` tree.
//!
//! The `config` crate's own deserializer is deliberately not used: it rounds
//! `1.7` to 2, reads `yes` and `true` as the integer 1, reads any non-zero
//! number as `true`, and names keys inside lists as `members[0]id` or only by
//! their section. Here every value must have the kind its key wants, and every
//! error carries the full dotted key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::{Value, ValueKind};

use crate::ConfigError;

/// What every error needs besides the key: the file, and which keys came from
/// environment variables.
pub(crate) struct Ctx {
    path: PathBuf,
    env_vars: BTreeMap<String, String>,
}

impl Ctx {
    pub(crate) fn new(path: PathBuf, env_vars: BTreeMap<String, String>) -> Self {
        Self { path, env_vars }
    }

    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.to_owned(),
            reason: reason.into(),
            env_var: self.env_var(key),
        }
    }

    /// Turns a validation outcome into an error naming `key`.
    pub(crate) fn check(&self, key: &str, outcome: Result<(), String>) -> Result<(), ConfigError> {
        outcome.map_err(|reason| self.invalid(key, reason))
    }

    fn unknown(&self, key: &str, known: &[&str]) -> ConfigError {
        ConfigError::UnknownKey {
            path: self.path.clone(),
            key: key.to_owned(),
            known: known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            env_var: self.env_var(key),
        }
    }

    /// The variable that set `key` or something inside it: a variable for
    /// `raft.listen` turns a scalar `raft` into a section.
    fn env_var(&self, key: &str) -> Option<String> {
        self.env_vars
            .iter()
            .find(|(k, _)| {
                k.strip_prefix(key)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .map(|(_, var)| var.clone())
    }

    pub(crate) fn table(
        &self,
        key: &str,
        value: Value,
    ) -> Result<config::Map<String, Value>, ConfigError> {
        match value.kind {
            ValueKind::Table(entries) => Ok(entries),
            other => Err(self.invalid(
                key,
                format!("expected a section of keys, got {}", describe(&other)),
            )),
        }
    }

    pub(crate) fn list(&self, key: &str, value: Value) -> Result<Vec<Value>, ConfigError> {
        match value.kind {
            ValueKind::Array(items) => Ok(items),
            other => Err(self.invalid(key, format!("expected a list, got {}", describe(&other)))),
        }
    }

    fn u64(&self, key: &str, value: &Value) -> Result<u64, ConfigError> {
        let number = match &value.kind {
            ValueKind::I64(n) => u64::try_from(*n).ok(),
            ValueKind::I128(n) => u64::try_from(*n).ok(),
            ValueKind::U64(n) => Some(*n),
            ValueKind::U128(n) => u64::try_from(*n).ok(),
            // Environment variables always arrive as text.
            ValueKind::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        };
        number.ok_or_else(|| {
            self.invalid(
                key,
                format!(
                    "expected a whole number from 0 to {}, got {}",
                    u64::MAX,
                    describe(&value.kind)
                ),
            )
        })
    }

    fn bool(&self, key: &str, value: &Value) -> Result<bool, ConfigError> {
        match &value.kind {
            ValueKind::Boolean(b) => Ok(*b),
            ValueKind::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            ValueKind::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(self.invalid(
                key,
                format!("expected true or false, got {}", describe(other)),
            )),
        }
    }

    /// A PostgreSQL parameter value, as the text PostgreSQL reads: booleans
    /// become `on`/`off`, whole numbers their decimal digits.
    pub(crate) fn setting_text(&self, key: &str, value: Value) -> Result<String, ConfigError> {
        let text = match value.kind {
            ValueKind::String(s) => s,
            ValueKind::Boolean(b) => if b { "on" } else { "off" }.to_owned(),
            ValueKind::I64(n) => n.to_string(),
            ValueKind::I128(n) => n.to_string(),
            ValueKind::U64(n) => n.to_string(),
            ValueKind::U128(n) => n.to_string(),
            ValueKind::Nil => {
                return Err(self.invalid(
                    key,
                    "is empty: give it a value, or delete the line to leave the parameter \
                     to PostgreSQL",
                ));
            }
            // A float has already lost its spelling (`1.10` reads as 1.1).
            other => {
                return Err(self.invalid(
                    key,
                    format!(
                        "expected text, a whole number, or true or false, got {}; \
                         put the value in quotes to pass it as written",
                        describe(&other)
                    ),
                ));
            }
        };
        // A line break would end the line in postgresql.conf and let the rest
        // set any parameter, including the ones the agent owns.
        if text.chars().any(char::is_control) {
            return Err(self.invalid(
                key,
                format!("must not contain line breaks or other control characters, got {text:?}"),
            ));
        }
        Ok(text)
    }

    fn string(&self, key: &str, value: Value) -> Result<String, ConfigError> {
        match value.kind {
            ValueKind::String(s) => Ok(s),
            // Converting would lose the spelling: YAML reads `007` as 7.
            other => Err(self.invalid(
                key,
                format!(
                    "expected text, got {}; put the value in quotes if it is meant as text",
                    describe(&other)
                ),
            )),
        }
    }
}

fn describe(kind: &ValueKind) -> String {
    match kind {
        ValueKind::Nil => "nothing".into(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(f) => f.to_string(),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a section of keys".into(),
        ValueKind::Array(_) => "a list".into(),
    }
}

/// What [`describe`] says without the value itself.
fn kind_name(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "true or false",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "a whole number"
        }
        ValueKind::Float(_) => "a number",
        ValueKind::String(_) => "text",
        ValueKind::Table(_) => "a section of keys",
        ValueKind::Array(_) => "a list",
    }
}

/// One map of the tree whose keys have been checked against the schema.
/// Values are taken out as they are read.
pub(crate) struct Section<'c> {
    ctx: &'c Ctx,
    /// Dotted path of this section; empty at the top level.
    prefix: String,
    entries: config::Map<String, Value>,
}

impl<'c> Section<'c> {
    /// Rejects any key not in `known`, so a typo is reported as such rather
    /// than as the correctly spelled key being missing.
    pub(crate) fn open(
        ctx: &'c Ctx,
        prefix: String,
        entries: config::Map<String, Value>,
        known: &[&str],
    ) -> Result<Self, ConfigError> {
        let section = Self {
            ctx,
            prefix,
            entries,
        };
        let unknown = section
            .entries
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .min();
        match unknown {
            Some(name) => Err(ctx.unknown(&section.key(name), known)),
            None => Ok(section),
        }
    }

    pub(crate) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The raw value, for keys whose absence needs a message of its own.
    pub(crate) fn take(&mut self, name: &str) -> Option<Value> {
        self.entries.remove(name)
    }

    fn optional(&mut self, name: &str) -> Result<Option<Value>, ConfigError> {
        match self.take(name) {
            Some(value) if matches!(value.kind, ValueKind::Nil) => Err(self.ctx.invalid(
                &self.key(name),
                "is empty: give it a value, or delete the line to use the default",
            )),
            other => Ok(other),
        }
    }

    fn required(&mut self, name: &str, hint: &str) -> Result<Value, ConfigError> {
        match self.take(name) {
            None => Err(self
                .ctx
                .invalid(&self.key(name), format!("is missing: {hint}"))),
            Some(value) if matches!(value.kind, ValueKind::Nil) => Err(self
                .ctx
                .invalid(&self.key(name), format!("is empty: {hint}"))),
            Some(value) => Ok(value),
        }
    }

    pub(crate) fn u64(&mut self, name: &str, hint: &str) -> Result<u64, ConfigError> {
        let value = self.required(name, hint)?;
        self.ctx.u64(&self.key(name), &value)
    }

    pub(crate) fn u64_or(&mut self, name: &str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(name)? {
            Some(value) => self.ctx.u64(&self.key(name), &value),
            None => Ok(default),
        }
    }

    pub(crate) fn bool_or(&mut self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name)? {
            Some(value) => self.ctx.bool(&self.key(name), &value),
            None => Ok(default),
        }
    }

    pub(crate) fn string(&mut self, name: &str, hint: &str) -> Result<String, ConfigError> {
        let value = self.required(name, hint)?;
        self.ctx.string(&self.key(name), value)
    }

    pub(crate) fn string_opt(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        self.optional(name)?
            .map(|value| self.ctx.string(&self.key(name), value))
            .transpose()
    }

    /// Text that must never appear in a message, such as a password: a
    /// wrong kind is named without the value.
    pub(crate) fn secret(&mut self, name: &str, hint: &str) -> Result<String, ConfigError> {
        let value = self.required(name, hint)?;
        match value.kind {
            ValueKind::String(s) => Ok(s),
            other => Err(self.ctx.invalid(
                &self.key(name),
                format!(
                    "expected text, got {}; put the value in quotes",
                    kind_name(&other)
                ),
            )),
        }
    }

    /// An optional [`Section::secret`].
    pub(crate) fn secret_opt(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        if !self.entries.contains_key(name) {
            return Ok(None);
        }
        self.secret(name, "give the password, or delete the line")
            .map(Some)
    }

    pub(crate) fn section(
        &mut self,
        name: &str,
        known: &[&str],
        hint: &str,
    ) -> Result<Section<'c>, ConfigError> {
        let value = self.required(name, hint)?;
        let key = self.key(name);
        let entries = self.ctx.table(&key, value)?;
        Section::open(self.ctx, key, entries, known)
    }

    /// A section whose absence means a feature is off, not that its keys
    /// take defaults.
    pub(crate) fn section_opt(
        &mut self,
        name: &str,
        known: &[&str],
    ) -> Result<Option<Section<'c>>, ConfigError> {
        let Some(value) = self.optional(name)? else {
            return Ok(None);
        };
        let key = self.key(name);
        let entries = self.ctx.table(&key, value)?;
        Section::open(self.ctx, key, entries, known).map(Some)
    }

    /// An absent section reads as empty, so its keys take their defaults.
    pub(crate) fn section_or_empty(
        &mut self,
        name: &str,
        known: &[&str],
    ) -> Result<Section<'c>, ConfigError> {
        let entries = self.table_or_empty(name)?;
        Section::open(self.ctx, self.key(name), entries, known)
    }

    /// A map whose keys are not part of the schema, such as PostgreSQL
    /// parameters; absent reads as empty. The caller checks each key.
    pub(crate) fn table_or_empty(
        &mut self,
        name: &str,
    ) -> Result<config::Map<String, Value>, ConfigError> {
        match self.optional(name)? {
            Some(value) => self.ctx.table(&self.key(name), value),
            None => Ok(config::Map::default()),
        }
    }
}
