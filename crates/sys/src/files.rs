//! Files and directories that hold secrets (the configuration database with pre-shared keys, the control
//! socket): created private to their owner, never through a symbolic link.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the files weftd writes: read and write for its owner only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories weftd creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents with mode 0700 (existing directories are left as they are).
pub fn create_private_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates a new file with mode 0600 for writing: fails if anything (a file, a symbolic link planted by
/// someone else) already exists at `path` (O_EXCL), and never follows a link (O_NOFOLLOW).
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing file for reading without following a symbolic link at `path`.
pub fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
}

/// An error if `path` is a symbolic link (a missing path is fine).
pub fn refuse_symlink(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link; weftd does not follow links for its database and socket", path.display()),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Narrows the mode of an existing file to 0600 if it allows more; returns whether it did.
pub fn make_private(file: &File) -> io::Result<bool> {
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & !FILE_MODE == 0 {
        return Ok(false);
    }
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs() {
        let base = std::env::temp_dir().join(format!("weft-files-{}", std::process::id()));
        let dir = base.join("a/b");
        create_private_dirs(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, DIR_MODE);
        let f = dir.join("db");
        drop(create_private_file(&f).unwrap());
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, FILE_MODE);
        assert!(create_private_file(&f).is_err(), "O_EXCL: an existing file is not reused");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(refuse_symlink(&link).is_err());
        assert!(refuse_symlink(&f).is_ok());
        assert!(open_no_follow(&link).is_err());
        assert!(create_private_file(&link).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(make_private(&open_no_follow(&f).unwrap()).unwrap());
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, FILE_MODE);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
