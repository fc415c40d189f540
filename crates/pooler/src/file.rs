//! The databases file, replaced atomically so pgbouncer never reads half of
//! one: a RELOAD that meets a broken entry refuses the whole file.

use crate::error::{PoolerError, Result, io_err};
use crate::routes::{Routes, render_databases};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a new databases file: pgbouncer may run as another user than
/// the agent, and the file holds no secret.
const NEW_FILE_MODE: u32 = 0o644;

/// Renders `routes` into `path` and returns whether the content changed, so
/// the caller RELOADs pgbouncer only then. The new text goes to a temporary
/// file in the same directory, is fsynced, renamed over `path`, and the
/// directory is fsynced: after a crash `path` holds the old or the new text.
///
/// `path` must be absolute, since pgbouncer resolves a relative `%include`
/// against its own working directory.
pub fn write_databases_file(path: &Path, routes: &Routes) -> Result<bool> {
    if !path.is_absolute() {
        return Err(PoolerError::InvalidSetting {
            key: "databases_file",
            value: path.display().to_string(),
            reason: "it must be an absolute path, as pgbouncer's %include resolves a relative one against its own working directory",
        });
    }
    let text = render_databases(routes)?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(PoolerError::InvalidSetting {
            key: "databases_file",
            value: path.display().to_string(),
            reason: "it names no file",
        });
    };
    match fs::read(path) {
        Ok(current) if current == text.as_bytes() => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read", path)(e)),
    }
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => NEW_FILE_MODE,
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".raftgres-tmp");
    let tmp = dir.join(tmp_name);
    let result = write_synced(&tmp, text.as_bytes(), mode)
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename into place", path)))
        .and_then(|()| {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync", dir))
        });
    if result.is_err() {
        // Leaves no stray file; the old `path` is untouched before the rename.
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("create", path))?;
    // `mode` applies only when the file is created; a stale one may differ.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("set the mode of", path))?;
    file.write_all(bytes).map_err(io_err("write", path))?;
    file.sync_all().map_err(io_err("fsync", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Target;

    fn routes(port: u16) -> Routes {
        Routes {
            write: Some(Target {
                host: "127.0.0.1".into(),
                port,
            }),
            read: Vec::new(),
            write_db: "app".into(),
            read_db: None,
            dbname: "app".into(),
        }
    }

    #[test]
    fn writes_once_and_reports_only_real_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("databases.ini");
        assert!(write_databases_file(&path, &routes(5432)).expect("first write"));
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            render_databases(&routes(5432)).expect("render")
        );
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, NEW_FILE_MODE);
        assert!(!write_databases_file(&path, &routes(5432)).expect("same again"));
        assert!(write_databases_file(&path, &routes(5433)).expect("changed"));
        assert!(
            fs::read_to_string(&path)
                .expect("read")
                .contains("port=5433")
        );
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["databases.ini"], "no temporary file stays behind");
    }

    #[test]
    fn a_reader_of_the_old_file_sees_it_whole_and_the_mode_survives() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("databases.ini");
        write_databases_file(&path, &routes(5432)).expect("first write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        // A reader holding the old file keeps seeing whole old text.
        let old = fs::File::open(&path).expect("open old");
        write_databases_file(&path, &routes(5433)).expect("replace");
        let old_text = std::io::read_to_string(old).expect("read old");
        assert!(old_text.contains("port=5432"), "{old_text}");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "an operator's chmod survives a rewrite");
    }

    #[test]
    fn relative_paths_and_bad_routes_write_nothing() {
        let err = write_databases_file(Path::new("databases.ini"), &routes(5432))
            .expect_err("relative")
            .to_string();
        assert!(err.contains("pgbouncer.databases_file"), "{err}");
        assert!(err.contains("absolute"), "{err}");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("databases.ini");
        let mut bad = routes(5432);
        bad.write_db = "pgbouncer".into();
        write_databases_file(&path, &bad).expect_err("reserved name");
        assert!(!path.exists());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent").join("databases.ini");
        let err = write_databases_file(&path, &routes(5432))
            .expect_err("no directory")
            .to_string();
        assert!(err.contains("absent"), "{err}");
    }
}
