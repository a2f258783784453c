//! The configuration database: one JSON file, replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory), so a crash at any moment leaves either the old or the new configuration.

use anyhow::Context;
use std::io::{Read, Write};
use std::path::Path;
use weft_api::config::Valid;
use weft_api::Config;
use weft_sys::files;

/// Reads the configuration; a missing file is an empty configuration. The database holds secrets (pre-shared
/// keys): it is never read through a symbolic link, and a file readable by others is made 0600.
pub fn load(path: &Path) -> anyhow::Result<Valid> {
    files::refuse_symlink(path)?;
    let mut f = match files::open_no_follow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Valid::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if files::make_private(&f).with_context(|| format!("cannot change the mode of {}", path.display()))? {
        tracing::warn!("{} was readable by others; its mode is now 0600", path.display());
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: Config =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a weft database", path.display()))?;
    Valid::new(cfg).with_context(|| format!("{} holds an invalid configuration", path.display()))
}

/// Replaces the database with `cfg`: a new file (mode 0600, O_EXCL, O_NOFOLLOW) is written, synced and
/// renamed over the old one; directories it creates are 0700.
pub fn save(path: &Path, cfg: &Config) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    files::create_private_dirs(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    files::refuse_symlink(path)?;
    let tmp = path.with_extension("db.tmp");
    // A temporary file left by a crash is ours to remove (a link there is removed, not followed).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", tmp.display()))
        }
        _ => {}
    }
    let mut f = files::create_private_file(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut text = serde_json::to_vec_pretty(cfg)?;
    text.push(b'\n');
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let dir = std::env::temp_dir().join(format!("weft-db-test-{}", std::process::id()));
        let path = dir.join("conf.db");
        assert_eq!(*load(&path).unwrap(), Config::default());
        let mut c = Config::default();
        c.add_bridge("br0", false).unwrap();
        save(&path, &c).unwrap();
        assert_eq!(*load(&path).unwrap(), c);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "the database holds pre-shared keys");
        assert_eq!(mode(&dir), 0o700);
        // A stale temporary file from a crash does not stop the next save.
        std::fs::write(path.with_extension("db.tmp"), b"half").unwrap();
        save(&path, &c).unwrap();
        // A database left readable by others is narrowed when loaded.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(*load(&path).unwrap(), c);
        assert_eq!(mode(&path), 0o600);
        // Never through a symbolic link.
        let link = dir.join("link.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(load(&link).unwrap_err().to_string().contains("symbolic link"));
        assert!(save(&link, &c).is_err());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
