//! File system steps on the data directory. Everything written here must end
//! up owned by the user PostgreSQL runs as: the server refuses to read a
//! root-owned `0600` file, and `pg_rewind` must be able to overwrite it.

use crate::error::{PgError, Result, io_err};
use crate::settings::RunAs;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// For a clone: an empty data directory. Existing contents are moved aside
/// to `<data_dir>.old-<unix seconds>`, never deleted: they may hold the only
/// copy of writes a failover did not carry over. Returns where they went.
pub(crate) fn empty_data_dir_moving_aside(
    path: &Path,
    owner: Option<RunAs>,
) -> Result<Option<PathBuf>> {
    let mut moved = None;
    if path.exists() && !is_empty_dir(path)? {
        // Wall-clock time only names the directory for the operator.
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = format!("{}.old-{stamp}", path.display());
        let mut aside = PathBuf::from(&base);
        let mut n = 1;
        while aside.exists() {
            aside = PathBuf::from(format!("{base}-{n}"));
            n += 1;
        }
        fs::rename(path, &aside).map_err(io_err("move aside", path))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        tracing::warn!(data_dir = %path.display(), moved_to = %aside.display(),
            "moved the old data directory aside before cloning");
        moved = Some(aside);
    }
    create_data_dir(path, owner)?;
    Ok(moved)
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
    fn moving_aside_keeps_old_contents() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        let aside = empty_data_dir_moving_aside(&data, None).unwrap().unwrap();
        assert_eq!(
            fs::read_to_string(aside.join("PG_VERSION")).unwrap(),
            "15\n"
        );
        assert!(is_empty_dir(&data).unwrap());
        let mode = fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // An empty directory is reused as it is.
        assert_eq!(empty_data_dir_moving_aside(&data, None).unwrap(), None);
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
}
