//! Small JVM programs sparkgate adds to Spark's own: compiled once with the Scala compiler that
//! Spark's jars carry (every Spark distribution has it, for its shell), so they need no build
//! step of ours and always match the Spark version they run with.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Instant;

use sha2::Digest;
use tracing::info;

use super::LaunchError;

/// Scala sources (file name, text), compiled together on first use into a jar under a cache
/// directory.
pub struct ScalaJar {
    /// Names the jar and the log lines (`driver-auth`, `loopback-metastore`).
    name: &'static str,
    sources: &'static [(&'static str, &'static str)],
    spark_home: PathBuf,
    cache_dir: PathBuf,
    built: Mutex<Option<PathBuf>>,
}

impl ScalaJar {
    pub fn new(
        name: &'static str,
        sources: &'static [(&'static str, &'static str)],
        spark_home: PathBuf,
        cache_dir: PathBuf,
    ) -> Self {
        Self {
            name,
            sources,
            spark_home,
            cache_dir,
            built: Mutex::new(None),
        }
    }

    /// The jar, compiled the first time (keyed by the source and the names of Spark's jars, so a
    /// Spark upgrade compiles it again). Blocking: seconds on a cold compile.
    pub fn path(&self) -> Result<PathBuf, LaunchError> {
        let mut built = self.built.lock().expect("scala jar");
        if let Some(path) = built.as_ref().filter(|p| p.exists()) {
            return Ok(path.clone());
        }
        let mut key = sha2::Sha256::new();
        for (file, text) in self.sources {
            key.update(file.as_bytes());
            key.update(text.as_bytes());
        }
        let mut jars: Vec<String> = std::fs::read_dir(self.spark_home.join("jars"))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        jars.sort();
        for name in &jars {
            key.update(name.as_bytes());
        }
        let key = key.finalize();
        let hex: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(&self.cache_dir)?;
        let path = self.cache_dir.join(format!("{}-{hex}.jar", self.name));
        if !path.exists() {
            let started = Instant::now();
            let mut source_paths = Vec::with_capacity(self.sources.len());
            for (file, text) in self.sources {
                let path = self.cache_dir.join(file);
                std::fs::File::create(&path)?.write_all(text.as_bytes())?;
                source_paths.push(path);
            }
            let partial = self
                .cache_dir
                .join(format!("{}-{hex}.partial.jar", self.name));
            let out = std::process::Command::new(java())
                .args(["-Xmx512m", "-XX:TieredStopAtLevel=1", "-cp"])
                .arg(format!("{}/jars/*", self.spark_home.display()))
                .args(["scala.tools.nsc.Main", "-usejavacp", "-nowarn", "-d"])
                .arg(&partial)
                .args(&source_paths)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    LaunchError::Start(format!("cannot run Spark's Scala compiler: {e}"))
                })?;
            if !out.status.success() || !partial.exists() {
                return Err(LaunchError::Start(format!(
                    "cannot compile sparkgate's {} with Spark's Scala compiler ({}): {}",
                    self.name,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .chars()
                        .take(2000)
                        .collect::<String>()
                )));
            }
            // Drivers running as tenants' OS users load it.
            std::fs::set_permissions(
                &partial,
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
            std::fs::rename(&partial, &path)?;
            info!(jar = %path.display(), secs = started.elapsed().as_secs_f64(), "compiled sparkgate's {}", self.name);
        }
        *built = Some(path.clone());
        Ok(path)
    }
}

/// The `java` that Spark's own scripts would use.
pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin/java").exists() => {
            Path::new(&home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    }
}
