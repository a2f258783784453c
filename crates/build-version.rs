//! Records the git commit the binary is built from, for `--version` ("unknown" outside a git checkout).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WEFT_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: another branch (HEAD), a new commit (the branch's loose ref file, or the
    // directory it reappears in after `git gc` packed it), or a repack (packed-refs).
    let mut watch = vec!["../../.git/HEAD".to_string(), "../../.git/packed-refs".to_string()];
    if let Some(r) = std::fs::read_to_string("../../.git/HEAD")
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        if let Some(dir) = std::path::Path::new(&r).parent() {
            watch.push(format!("../../.git/{}", dir.display()));
        }
        watch.push(format!("../../.git/{r}"));
    }
    for f in watch {
        if std::path::Path::new(&f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
