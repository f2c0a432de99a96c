//! Image folders as scoring input: every JPEG and PNG below each folder, in a stable order.

use std::path::{Path, PathBuf};

/// One image to score, named as the score tables name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    /// The folder's base name (`id-imagenet`, `ood-dtd`, ...).
    pub set: String,
    /// Path relative to the folder, with `/` separators.
    pub name: String,
    /// Where to read it.
    pub path: PathBuf,
}

/// Why a folder could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The folder is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The folder or entry.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path is not a folder.
    #[error("{0}: not a folder")]
    NotADirectory(PathBuf),
    /// The folder holds no image.
    #[error("{0}: no .jpg, .jpeg or .png file below it")]
    Empty(PathBuf),
}

/// True for the file names scored: `.jpg`, `.jpeg`, `.png`, any case.
pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["jpg", "jpeg", "png"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Every image below each folder, sorted by relative path within a folder, folders in order.
pub fn collect(dirs: &[PathBuf]) -> Result<Vec<ImageFile>, ImagesError> {
    let mut all = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            return Err(match std::fs::metadata(dir) {
                Err(source) => ImagesError::Io {
                    path: dir.clone(),
                    source,
                },
                Ok(_) => ImagesError::NotADirectory(dir.clone()),
            });
        }
        let set = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(dir).follow_links(true) {
            let entry = entry.map_err(|e| ImagesError::Io {
                path: e.path().unwrap_or(dir).to_path_buf(),
                source: e.into(),
            })?;
            if entry.file_type().is_file() && is_image(entry.path()) {
                let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push(ImageFile {
                    set: set.clone(),
                    name,
                    path: entry.into_path(),
                });
            }
        }
        if files.is_empty() {
            return Err(ImagesError::Empty(dir.clone()));
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(files);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_images_sorted_and_rejects_bad_folders() {
        let dir = std::env::temp_dir().join(format!("napctl-images-{}", std::process::id()));
        let sub = dir.join("set-a").join("b");
        std::fs::create_dir_all(&sub).unwrap();
        for f in ["z.PNG", "a.jpg", "b/c.jpeg", "notes.txt"] {
            std::fs::write(dir.join("set-a").join(f), b"x").unwrap();
        }
        let files = collect(&[dir.join("set-a")]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.set.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("set-a", "a.jpg"),
                ("set-a", "b/c.jpeg"),
                ("set-a", "z.PNG")
            ]
        );

        std::fs::create_dir_all(dir.join("empty")).unwrap();
        assert!(matches!(
            collect(&[dir.join("empty")]),
            Err(ImagesError::Empty(_))
        ));
        assert!(matches!(
            collect(&[dir.join("missing")]),
            Err(ImagesError::Io { .. })
        ));
        assert!(matches!(
            collect(&[dir.join("set-a/a.jpg")]),
            Err(ImagesError::NotADirectory(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
