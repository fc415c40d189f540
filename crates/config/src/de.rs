//! A strict serde `Deserializer` over the merged `config::Value` tree.
//!
//! The `config` crate's own deserializer is deliberately not used: it rounds
//! `1.7` to 2, reads `yes` and `true` as the integer 1, reads any non-zero
//! number as `true`, and names keys inside lists as `members[0]id` or only by
//! their section. Here every value must have the kind its key wants; the
//! only conversions are the ones environment variables need, whose values
//! always arrive as text (`"50"` for a number, `"true"` for a switch). Keys
//! are visited in sorted order, so that of several mistakes the same one is
//! always reported. Paths are left to `serde_path_to_error`.

use config::{Value, ValueKind};
use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

/// What is wrong with one value; the caller adds the key it sits at.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Problem {
    /// A key the section does not have; `known` in the schema's order.
    #[error("unknown key")]
    Unknown { known: &'static [&'static str] },
    /// A key the section needs is absent.
    #[error("`{field}` is missing")]
    Missing { field: &'static str },
    /// A key written without a value.
    #[error("is empty")]
    Empty,
    #[error("{0}")]
    Invalid(String),
}

impl de::Error for Problem {
    fn custom<T: std::fmt::Display>(reason: T) -> Self {
        Problem::Invalid(reason.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        let got = match unexpected {
            Unexpected::Unit | Unexpected::Option => return Problem::Empty,
            Unexpected::Bool(b) => b.to_string(),
            Unexpected::Unsigned(n) => n.to_string(),
            Unexpected::Signed(n) => n.to_string(),
            Unexpected::Float(f) => f.to_string(),
            Unexpected::Str(s) => format!("{s:?}"),
            Unexpected::Seq => "a list".into(),
            Unexpected::Map => "a section of keys".into(),
            other => other.to_string(),
        };
        Problem::Invalid(format!("expected {expected}, got {got}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Problem::Invalid(format!(
            "must be one of {}, got {variant:?}",
            expected.join(", ")
        ))
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        Problem::Unknown { known: expected }
    }

    fn missing_field(field: &'static str) -> Self {
        Problem::Missing { field }
    }
}

/// One value of the tree, read as the schema asks.
pub(crate) struct Strict(pub(crate) Value);

/// Fails with `reason_for(what the value is)`, or as [`Problem::Empty`] when
/// there is no value at all.
fn wrong<T>(kind: ValueKind, reason_for: impl FnOnce(String) -> String) -> Result<T, Problem> {
    match kind {
        ValueKind::Nil => Err(Problem::Empty),
        other => Err(Problem::Invalid(reason_for(describe(&other)))),
    }
}

impl Strict {
    fn u64(self) -> Result<u64, Problem> {
        let number = match &self.0.kind {
            ValueKind::I64(n) => u64::try_from(*n).ok(),
            ValueKind::I128(n) => u64::try_from(*n).ok(),
            ValueKind::U64(n) => Some(*n),
            ValueKind::U128(n) => u64::try_from(*n).ok(),
            ValueKind::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        };
        match number {
            Some(n) => Ok(n),
            None => wrong(self.0.kind, |got| {
                format!("expected a whole number from 0 to {}, got {got}", u64::MAX)
            }),
        }
    }
}

impl<'de> de::Deserializer<'de> for Strict {
    type Error = Problem;

    /// For types that take several kinds, such as a PostgreSQL parameter's
    /// value: they see the value as it is.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::Nil => visitor.visit_unit(),
            ValueKind::Boolean(b) => visitor.visit_bool(b),
            ValueKind::I64(n) => visitor.visit_i64(n),
            ValueKind::I128(n) => visitor.visit_i128(n),
            ValueKind::U64(n) => visitor.visit_u64(n),
            ValueKind::U128(n) => visitor.visit_u128(n),
            ValueKind::Float(f) => visitor.visit_f64(f),
            ValueKind::String(s) => visitor.visit_string(s),
            ValueKind::Table(entries) => visitor.visit_map(Entries::new(entries)),
            ValueKind::Array(items) => visitor.visit_seq(Items(items.into_iter())),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::Boolean(b) => visitor.visit_bool(b),
            ValueKind::String(s) if s.eq_ignore_ascii_case("true") => visitor.visit_bool(true),
            ValueKind::String(s) if s.eq_ignore_ascii_case("false") => visitor.visit_bool(false),
            other => wrong(other, |got| format!("expected true or false, got {got}")),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_u64(self.u64()?)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        let n = self.u64()?;
        let n = u32::try_from(n)
            .map_err(|_| Problem::Invalid(format!("must be at most {}, got {n}", u32::MAX)))?;
        visitor.visit_u32(n)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::String(s) => visitor.visit_string(s),
            // Converting would lose the spelling: YAML reads `007` as 7. The
            // value itself is not shown: it may be a password.
            ValueKind::Nil => Err(Problem::Empty),
            other => Err(Problem::Invalid(format!(
                "expected text, got {}; put the value in quotes if it is meant as text",
                kind_name(&other)
            ))),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        self.deserialize_string(visitor)
    }

    /// A key written with nothing after it is a mistake, not "use the
    /// default": that is what leaving the line out says.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::Nil => Err(Problem::Empty),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::Array(items) => visitor.visit_seq(Items(items.into_iter())),
            other => wrong(other, |got| format!("expected a list, got {got}")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::Table(entries) => visitor.visit_map(Entries::new(entries)),
            other => wrong(other, |got| {
                format!("expected a section of keys, got {got}")
            }),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        self.deserialize_map(visitor)
    }

    /// Only unit variants, written as text.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.0.kind {
            ValueKind::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => wrong(other, |got| format!("expected text, got {got}")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Problem> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char bytes byte_buf unit
        unit_struct tuple tuple_struct identifier ignored_any
    }
}

/// A section's entries, sorted by key.
struct Entries {
    entries: std::vec::IntoIter<(String, Value)>,
    value: Option<Value>,
}

impl Entries {
    fn new(entries: config::Map<String, Value>) -> Self {
        let mut entries: Vec<(String, Value)> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Entries {
            entries: entries.into_iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for Entries {
    type Error = Problem;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Problem> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(StringDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Problem> {
        let value = self
            .value
            .take()
            .ok_or_else(|| Problem::Invalid("a value was read before its key".into()))?;
        seed.deserialize(Strict(value))
    }
}

struct Items(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for Items {
    type Error = Problem;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Problem> {
        self.0
            .next()
            .map(|item| seed.deserialize(Strict(item)))
            .transpose()
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
