//! File system steps on the data directory. Everything written here must end
//! up owned by the user PostgreSQL runs as: the server refuses to read a
//! root-owned `0600` file, and `pg_rewind` must be able to overwrite it.

use crate::error::{PgError, Result, io_err};
use crate::settings::{PgSettings, RunAs};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` so a crash leaves either the old or the
/// new file, never a torn one that would stop the server from starting.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], owner: Option<RunAs>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    chown(&tmp, owner)?;
    fs::rename(&tmp, path).map_err(io_err("rename a file onto", path))?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

pub(crate) fn chown(path: &Path, owner: Option<RunAs>) -> Result<()> {
    match owner {
        Some(owner) => std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
            .map_err(io_err("change the owner of", path)),
        None => Ok(()),
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Appends `line` to the file unless a line equal to it is already there.
pub(crate) fn append_line_once(path: &Path, line: &str, owner: Option<RunAs>) -> Result<()> {
    let mut text = fs::read_to_string(path).map_err(io_err("read", path))?;
    if text.lines().any(|existing| existing.trim() == line) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write_atomic(path, text.as_bytes(), owner)
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut entries = fs::read_dir(path).map_err(io_err("list", path))?;
    Ok(entries.next().is_none())
}

/// Creates the data directory the way PostgreSQL insists on (`0700`, owned
/// by the server's user). An existing empty directory is reused.
fn create_data_dir(path: &Path, owner: Option<RunAs>) -> Result<()> {
    if !path.exists() {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        fs::create_dir(path).map_err(io_err("create", path))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io_err("set mode 0700 on", path))?;
    chown(path, owner)
}

/// For initdb: an empty data directory, or a refusal that touches nothing.
pub(crate) fn empty_data_dir_for_initdb(path: &Path, owner: Option<RunAs>) -> Result<()> {
    if path.exists() && !is_empty_dir(path)? {
        return Err(PgError::DataDirNotEmpty {
            path: path.to_path_buf(),
        });
    }
    create_data_dir(path, owner)
}

/// Where a clone is written: the data directory itself when it holds
/// nothing (a first clone, or a mount point prepared for it), otherwise a
/// sibling staging directory, so the member keeps its data until the new
/// copy is complete. A staging directory left by an interrupted clone never
/// served, so it is removed first.
pub(crate) fn clone_target(data_dir: &Path, owner: Option<RunAs>) -> Result<PathBuf> {
    if !data_dir.exists() || is_empty_dir(data_dir)? {
        create_data_dir(data_dir, owner)?;
        return Ok(data_dir.to_path_buf());
    }
    let staging = sibling(data_dir, "clone");
    remove_tree(&staging)?;
    create_data_dir(&staging, owner)?;
    Ok(staging)
}

/// Puts a complete clone in `staging` in place of `data_dir` and removes
/// the replaced data. The replaced data is removed, not kept: a member
/// re-cloned again and again would otherwise fill its disk with copies
/// (each as large as the database), and a full disk is what stops the
/// next clone. Its writes that no replica had are lost either way once
/// the member follows another timeline; the clone is logged so an
/// operator can tell when.
pub(crate) fn swap_in_clone(data_dir: &Path, staging: &Path) -> Result<()> {
    if staging == data_dir {
        return Ok(());
    }
    let replaced = sibling(data_dir, "replaced");
    remove_tree(&replaced)?;
    if data_dir.exists() {
        fs::rename(data_dir, &replaced).map_err(io_err("move aside", data_dir))?;
    }
    fs::rename(staging, data_dir).map_err(io_err("move the new clone into", data_dir))?;
    if let Some(parent) = data_dir.parent() {
        sync_dir(parent)?;
    }
    remove_tree(&replaced)?;
    tracing::warn!(data_dir = %data_dir.display(),
        "replaced the data directory with the new clone and removed the old data");
    Ok(())
}

/// Removes a staging directory a failed clone wrote into; the data
/// directory itself is never removed here.
pub(crate) fn discard_clone(data_dir: &Path, staging: &Path) -> Result<()> {
    if staging == data_dir {
        return Ok(());
    }
    remove_tree(staging)
}

/// `<data_dir>.<suffix>`, beside the data directory so that a rename
/// stays on its file system.
fn sibling(data_dir: &Path, suffix: &str) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Creates a directory the server writes into (the socket directory) when
/// it does not exist yet; an existing one is left as the operator set it.
pub(crate) fn ensure_server_dir(path: &Path, owner: Option<RunAs>) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(io_err("create", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(io_err("set mode 0755 on", path))?;
    chown(path, owner)
}

/// The last `max` bytes of a log, for error messages.
pub(crate) fn tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(cannot read {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// Writes the libpq password file for the tools and the walreceiver: the
/// replication and rewind logins, for any host (every member shares them,
/// since a clone copies the roles). Mode 0600 and owned by the server's
/// user, or libpq ignores it.
pub(crate) fn write_passfile(settings: &PgSettings) -> Result<()> {
    let mut text = String::new();
    let mut logins = vec![&settings.replication, settings.rewinder()];
    logins.dedup_by(|a, b| a.user == b.user);
    for login in logins {
        text.push_str(&format!(
            "*:*:*:{}:{}\n",
            passfile_field(&login.user),
            passfile_field(login.password.expose())
        ));
    }
    write_atomic(&settings.passfile, text.as_bytes(), settings.run_as)
}

/// In a password file `:` separates fields and `\` escapes.
fn passfile_field(text: &str) -> String {
    text.replace('\\', "\\\\").replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_line_once_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("postgresql.conf");
        fs::write(&conf, "port = 5432").unwrap();
        append_line_once(&conf, "include_if_exists = 'raftgres.conf'", None).unwrap();
        append_line_once(&conf, "include_if_exists = 'raftgres.conf'", None).unwrap();
        assert_eq!(
            fs::read_to_string(&conf).unwrap(),
            "port = 5432\ninclude_if_exists = 'raftgres.conf'\n"
        );
    }

    #[test]
    fn a_clone_is_staged_beside_data_and_swapped_in() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // Empty: cloned in place, nothing to keep.
        assert_eq!(clone_target(&data, None).unwrap(), data);
        let mode = fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        fs::write(data.join("PG_VERSION"), "old").unwrap();
        let leftover = dir.path().join("data.clone");
        fs::create_dir(&leftover).unwrap();
        fs::write(leftover.join("half"), "x").unwrap();
        let staging = clone_target(&data, None).unwrap();
        assert_eq!(staging, leftover);
        assert!(is_empty_dir(&staging).unwrap(), "the leftover is removed");

        discard_clone(&data, &staging).unwrap();
        assert!(!staging.exists());
        assert_eq!(fs::read_to_string(data.join("PG_VERSION")).unwrap(), "old");

        let staging = clone_target(&data, None).unwrap();
        fs::write(staging.join("PG_VERSION"), "new").unwrap();
        swap_in_clone(&data, &staging).unwrap();
        assert_eq!(fs::read_to_string(data.join("PG_VERSION")).unwrap(), "new");
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, vec![std::ffi::OsString::from("data")]);
    }

    #[test]
    fn initdb_refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keep"), "x").unwrap();
        let err = empty_data_dir_for_initdb(dir.path(), None).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        assert!(dir.path().join("keep").exists());
    }

    #[test]
    fn passfile_fields_escape_separators() {
        assert_eq!(passfile_field(r"a:b\c"), r"a\:b\\c");
    }
}
