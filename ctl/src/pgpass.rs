//! The password file libpq reads (`PGPASSFILE`, else `~/.pgpass`), read
//! the way libpq reads it, since tokio-postgres does not: lines of
//! `host:port:dbname:user:password`, `*` matching anything in the first
//! four fields, `\:` and `\\` for a literal `:` and `\`, `#` starting a
//! comment line; the first matching line wins.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// What a connection is matched on.
pub struct Login<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// Where libpq looks: `PGPASSFILE`, else `.pgpass` in the home directory.
/// `None` without either, as libpq then reads no file.
pub fn location(pgpassfile: Option<String>, home: Option<PathBuf>) -> Option<PathBuf> {
    match pgpassfile.filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => home.map(|h| h.join(".pgpass")),
    }
}

/// The password for `login` in the file at `path`; none when the file does
/// not exist, as for libpq. A file others may read is refused: libpq skips
/// it, which would leave the login failing without saying why.
pub fn lookup(path: &Path, login: &Login) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the password file {}", path.display()));
        }
    };
    if !meta.is_file() {
        bail!(
            "the password file {} is not a plain file; point PGPASSFILE at one",
            path.display()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the password file {} may be read by others (mode {:o}), and libpq ignores such a \
             file: run `chmod 600` on it",
            path.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    Ok(find(&text, login))
}

/// The password of the first line of `text` that matches `login`.
pub fn find(text: &str, login: &Login) -> Option<String> {
    let port = login.port.to_string();
    let wanted = [login.host, port.as_str(), login.dbname, login.user];
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let mut rest = line;
            for value in wanted {
                rest = field_matches(rest, value)?;
            }
            Some(password(rest))
        })
}

/// When the field at the start of `line` matches `value` (or is `*`), the
/// text after its `:`. As libpq compares: character by character, so an
/// unescaped `:` may match one in `value` (`::1:5432:...` is host `::1`),
/// and a field without a closing `:` matches nothing.
fn field_matches<'a>(line: &'a str, value: &str) -> Option<&'a str> {
    if let Some(rest) = line.strip_prefix("*:") {
        return Some(rest);
    }
    let mut wanted = value.chars().peekable();
    let mut chars = line.char_indices();
    while let Some((at, c)) = chars.next() {
        let (c, escaped) = match c {
            '\\' => (chars.next()?.1, true),
            c => (c, false),
        };
        if c == ':' && !escaped && wanted.peek().is_none() {
            return Some(&line[at + 1..]);
        }
        if wanted.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The password field: up to an unescaped `:` or the end of the line.
fn password(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: Login = Login {
        host: "10.0.0.1",
        port: 5432,
        dbname: "postgres",
        user: "admin",
    };

    #[test]
    fn the_first_matching_line_wins_and_star_matches_anything() {
        let text = "\
# comment: 10.0.0.1:5432:postgres:admin:commented
10.0.0.2:5432:postgres:admin:other-host
10.0.0.1:5433:postgres:admin:other-port
10.0.0.1:5432:app:admin:other-db
10.0.0.1:5432:postgres:root:other-user

*:5432:*:admin:first
*:*:*:*:second
";
        assert_eq!(find(text, &LOGIN).as_deref(), Some("first"));
        let other = Login {
            user: "nobody",
            ..LOGIN
        };
        assert_eq!(find(text, &other).as_deref(), Some("second"));
        assert_eq!(find("10.0.0.2:*:*:*:x\n", &LOGIN), None);
        assert_eq!(find("", &LOGIN), None);
    }

    #[test]
    fn escapes_and_line_ends_read_as_libpq_reads_them() {
        // `\:` and `\\` in a field, a `:` ending the password, CRLF.
        let text = "10.0.0.1:5432:postgres:admin:pa\\:ss\\\\word:ignored\r\n";
        assert_eq!(find(text, &LOGIN).as_deref(), Some("pa:ss\\word"));
        let ipv6 = Login {
            host: "::1",
            ..LOGIN
        };
        assert_eq!(
            find("\\:\\:1:5432:postgres:admin:six\n", &ipv6).as_deref(),
            Some("six")
        );
        assert_eq!(
            find("::1:5432:postgres:admin:unescaped\n", &ipv6).as_deref(),
            Some("unescaped")
        );
        // A literal `*` is only a wildcard as the whole field.
        assert_eq!(find("10.0.0.*:5432:*:*:x\n", &LOGIN), None);
        // Too few fields match nothing; an empty password is a password.
        assert_eq!(find("10.0.0.1:5432:postgres:admin\n", &LOGIN), None);
        assert_eq!(find("*:*:*:*:\n", &LOGIN).as_deref(), Some(""));
        // A `#` starts a comment only at the start of a line.
        assert_eq!(find("*:*:*:*:pa#ss\n", &LOGIN).as_deref(), Some("pa#ss"));
    }

    #[test]
    fn pgpassfile_beats_the_home_directory() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            location(Some("/etc/pgpass".into()), home.clone()),
            Some(PathBuf::from("/etc/pgpass"))
        );
        assert_eq!(
            location(Some(String::new()), home.clone()),
            Some(PathBuf::from("/home/u/.pgpass"))
        );
        assert_eq!(location(None, None), None);
    }

    #[test]
    fn a_missing_file_is_no_password_and_an_open_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("pgpass");
        assert_eq!(lookup(&path, &LOGIN).expect("missing is fine"), None);
        std::fs::write(&path, "*:*:*:admin:secret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = lookup(&path, &LOGIN)
            .expect_err("readable by others")
            .to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            lookup(&path, &LOGIN).expect("private").as_deref(),
            Some("secret")
        );
        let err = lookup(dir.path(), &LOGIN)
            .expect_err("a directory")
            .to_string();
        assert!(err.contains("not a plain file"), "{err}");
    }
}
