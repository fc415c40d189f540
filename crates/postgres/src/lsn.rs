use crate::error::{PgError, Result};
use std::fmt;
use std::str::FromStr;

/// A position in the write-ahead log, in bytes from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses Postgres' `X/Y` notation: two hexadecimal halves of at most
    /// eight digits each, as printed by `pg_controldata` and `pg_lsn::text`.
    pub fn parse(text: &str) -> Result<Lsn> {
        let invalid = |reason| PgError::InvalidInput {
            what: "LSN",
            value: text.to_owned(),
            reason,
        };
        let (high, low) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("expected two hexadecimal halves separated by '/'"))?;
        let half = |part: &str| {
            // `from_str_radix` alone would accept a leading '+'.
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("each half must be 1 to 8 hexadecimal digits"));
            }
            u32::from_str_radix(part, 16)
                .map_err(|_| invalid("each half must be 1 to 8 hexadecimal digits"))
        };
        Ok(Lsn((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }

    /// Bytes of WAL from `older` to `self`, zero if `older` is ahead.
    pub fn bytes_since(self, older: Lsn) -> u64 {
        self.0.saturating_sub(older.0)
    }
}

impl FromStr for Lsn {
    type Err = PgError;

    fn from_str(text: &str) -> Result<Lsn> {
        Lsn::parse(text)
    }
}

impl fmt::Display for Lsn {
    /// Postgres' own notation, so logs can be compared with `pg_*` output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl From<tokio_postgres::types::PgLsn> for Lsn {
    fn from(lsn: tokio_postgres::types::PgLsn) -> Lsn {
        Lsn(u64::from(lsn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_notation() {
        assert_eq!(Lsn::parse("0/0").unwrap(), Lsn(0));
        assert_eq!(Lsn::parse("0/17414D0").unwrap(), Lsn(0x17414D0));
        assert_eq!(Lsn::parse("16/B374D848").unwrap(), Lsn(0x16_B374_D848));
        assert_eq!(Lsn::parse("ffffffff/ffffffff").unwrap(), Lsn(u64::MAX));
        assert_eq!(Lsn::parse(" 1/2\n").unwrap(), Lsn((1 << 32) | 2));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "g/0",
            "+1/0",
            "1/-1",
            "123456789/0",
            "0x1/0",
        ] {
            let err = Lsn::parse(bad).unwrap_err();
            assert!(
                matches!(err, PgError::InvalidInput { what: "LSN", .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for lsn in [Lsn(0), Lsn(0x17414D0), Lsn(0x16_B374_D848), Lsn(u64::MAX)] {
            assert_eq!(Lsn::parse(&lsn.to_string()).unwrap(), lsn);
        }
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
    }

    #[test]
    fn distance_never_underflows() {
        assert_eq!(Lsn(100).bytes_since(Lsn(40)), 60);
        assert_eq!(Lsn(40).bytes_since(Lsn(100)), 0);
    }
}
