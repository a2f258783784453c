//! The configuration database: one JSON file, replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory), so a crash at any moment leaves either the old or the new configuration.

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use weft_api::Config;

/// Reads the configuration; a missing file is an empty configuration.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let cfg: Config =
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not a weft database", path.display()))?;
            cfg.validate().with_context(|| format!("{} holds an invalid configuration", path.display()))?;
            Ok(cfg)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the database with `cfg`.
pub fn save(path: &Path, cfg: &Config) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("db.tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
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
        assert_eq!(load(&path).unwrap(), Config::default());
        let mut c = Config::default();
        c.add_bridge("br0", false).unwrap();
        save(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap(), c);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
