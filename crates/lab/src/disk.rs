//! Storage faults for the lab: a small filesystem under each member's
//! Postgres data directory that a test can fill up, and a private copy of
//! the Postgres binaries that a test can replace as a package upgrade does.
//!
//! The small filesystem is a tmpfs the lab mounts (root only): its size is
//! a hard limit like a real disk's, and nothing outside the lab's directory
//! is touched. The lab unmounts it when it stops.

use crate::process::{LabError, io};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the official Debian packages put PostgreSQL 15's binaries.
pub const SYSTEM_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The file [`fill`] writes; [`free`] removes it.
const FILLER: &str = "filler";

fn setup(message: String) -> LabError {
    LabError::Setup(message)
}

/// Mounts a tmpfs of `mib` MiB at `at` (created if missing), owned by
/// `owner` with mode 0700 so a data directory can live under it.
pub(crate) fn mount_small(at: &Path, mib: u64, owner: Option<(u32, u32)>) -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(setup(format!(
            "a small data disk at {} needs root to mount a tmpfs",
            at.display()
        )));
    }
    if mib == 0 {
        return Err(setup("a small data disk needs at least 1 MiB".into()));
    }
    fs::create_dir_all(at).map_err(io(at))?;
    let mut options = format!("size={mib}m,mode=0700");
    if let Some((uid, gid)) = owner {
        options.push_str(&format!(",uid={uid},gid={gid}"));
    }
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| setup(format!("cannot mount a tmpfs at {}: {e}", at.display())))
}

/// Detaches the mount at `at`; processes still using it keep it alive
/// unnamed until they exit, so stop them first.
pub(crate) fn unmount(at: &Path) {
    let _ = umount2(at, MntFlags::MNT_DETACH);
}

/// Fills the filesystem at `disk` to the last byte, as root, with one file.
/// Returns how many bytes it wrote.
pub fn fill(disk: &Path) -> Result<u64, LabError> {
    let path = disk.join(FILLER);
    let mut file = fs::File::create(&path).map_err(io(&path))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    // A full disk ends the loop; then single bytes take what a page left.
    for size in [chunk.len(), 4096, 1] {
        loop {
            match file.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(source) => return Err(LabError::Io { path, source }),
            }
        }
    }
    Ok(written)
}

/// Removes what [`fill`] wrote.
pub fn free(disk: &Path) -> Result<(), LabError> {
    let path = disk.join(FILLER);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LabError::Io { path, source }),
    }
}

/// Copies the Postgres binaries in `from` (the system's when `None`) into
/// `to/bin`, with the `lib/` and `share/` beside them, when there are, at
/// `to/lib` and `to/share`: a postgres that runs from a directory named
/// `bin` looks for its modules in the `lib` beside it, relocatable builds
/// (those of `scripts/fetch-postgres`) and Debian's alike. A fetched
/// build's are copied, since the members' user may not reach where it was
/// unpacked; the system's are linked. Returns `to/bin`.
pub(crate) fn copy_pg_binaries(from: Option<&Path>, to: &Path) -> Result<PathBuf, LabError> {
    let from = from.unwrap_or(Path::new(SYSTEM_PG_BIN));
    let bin = to.join("bin");
    fs::create_dir_all(&bin).map_err(io(&bin))?;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let source = entry.path();
        if !source.is_file() {
            continue;
        }
        let target = bin.join(entry.file_name());
        fs::copy(&source, &target).map_err(io(&target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io(&target))?;
    }
    if let Some(install) = from.parent() {
        for beside in ["lib", "share"] {
            let source = install.join(beside);
            let target = to.join(beside);
            if !source.is_dir() {
                continue;
            }
            if from == Path::new(SYSTEM_PG_BIN) {
                std::os::unix::fs::symlink(&source, &target).map_err(io(&target))?;
            } else {
                copy_tree(&source, &target)?;
            }
        }
    }
    Ok(bin)
}

/// Copies a directory tree, keeping symbolic links (`libpq.so ->
/// libpq.so.5`) as links; everything readable by the members' user.
fn copy_tree(from: &Path, to: &Path) -> Result<(), LabError> {
    fs::create_dir_all(to).map_err(io(to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(io(to))?;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io(&source))?;
        if kind.is_symlink() {
            let link = fs::read_link(&source).map_err(io(&source))?;
            std::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
        } else if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            fs::copy(&source, &target).map_err(io(&target))?;
            let mode = fs::metadata(&source)
                .map_err(io(&source))?
                .permissions()
                .mode();
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io(&target))?;
        }
    }
    Ok(())
}

/// Replaces `bin_dir/postgres` as a package upgrade does: a new file is
/// written beside it and renamed over it, so running servers keep the old
/// (now deleted) image and `/proc/PID/exe` says `postgres (deleted)`.
pub fn replace_postgres(bin_dir: &Path) -> Result<PathBuf, LabError> {
    let binary = bin_dir.join("postgres");
    let fresh = bin_dir.join(".postgres.new");
    fs::copy(&binary, &fresh).map_err(io(&fresh))?;
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).map_err(io(&fresh))?;
    fs::rename(&fresh, &binary).map_err(io(&binary))?;
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relocatable install (bin/, lib/ with a library link, share/)
    /// copies with its layout, so its binaries still find ../lib.
    #[test]
    fn a_relocatable_install_copies_with_lib_and_share() {
        let from = tempfile::tempdir().expect("tempdir");
        let install = from.path();
        for dir in ["bin", "lib", "share/timezone"] {
            fs::create_dir_all(install.join(dir)).unwrap();
        }
        fs::write(install.join("bin/postgres"), "#!/bin/sh\n").unwrap();
        fs::write(install.join("lib/libpq.so.5"), "elf").unwrap();
        std::os::unix::fs::symlink("libpq.so.5", install.join("lib/libpq.so")).unwrap();
        fs::write(install.join("share/timezone/UTC"), "tz").unwrap();
        let to = tempfile::tempdir().expect("tempdir");
        let bin = copy_pg_binaries(Some(&install.join("bin")), &to.path().join("pg")).unwrap();
        assert_eq!(bin, to.path().join("pg/bin"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&bin.join("postgres")), 0o755);
        let link = to.path().join("pg/lib/libpq.so");
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("libpq.so.5"));
        assert_eq!(fs::read_to_string(&link).unwrap(), "elf");
        let tz = to.path().join("pg/share/timezone/UTC");
        assert_eq!(mode(&tz), 0o644);
    }
}
