//! Reading manifests from files, directories and stdin, one YAML document at a time.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One YAML document and where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    /// File name (`-` for stdin).
    pub source: String,
    /// 1-based index of the document among the file's non-empty documents.
    pub index: usize,
    /// The document, or why it could not be parsed.
    pub value: Result<Value, String>,
}

/// A file or directory that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct LoadError {
    path: String,
    // Not a `source` (thiserror would chain it): the message already ends with it, and the
    // command line's `{:#}` would print it twice.
    error: std::io::Error,
}

/// Split multi-document YAML; empty documents are skipped, broken ones reported. After a
/// document that is not a valid object the next ones are still read; after a YAML syntax
/// error nothing more is (the parser cannot resynchronise).
pub fn parse_documents(source: &str, text: &str) -> Vec<Document> {
    let mut reader = std::io::Cursor::new(text.as_bytes());
    serde_saphyr::read::<_, Value>(&mut reader)
        .enumerate()
        .map(|(i, doc)| Document {
            source: source.to_string(),
            index: i + 1,
            value: match doc {
                Ok(v) if v.is_object() => Ok(v),
                Ok(_) => Err("document is not a mapping (expected a Kubernetes object)".into()),
                Err(e) => Err(format!("invalid YAML: {e}")),
            },
        })
        .collect()
}

/// Read every path: files, directories (their `*.yaml`/`*.yml`/`*.json`, recursively, sorted) and `-` for stdin.
///
/// # Errors
/// [`LoadError`] naming the first path that cannot be read (missing, not permitted, not
/// UTF-8, stdin failing). A document that does not parse is not an error: its
/// [`Document::value`] is `Err`.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| LoadError {
                    path: "-".into(),
                    error,
                })?;
            docs.extend(parse_documents("-", &text));
            continue;
        }
        for file in files_under(path)? {
            let text = std::fs::read_to_string(&file).map_err(|error| LoadError {
                path: file.display().to_string(),
                error,
            })?;
            docs.extend(parse_documents(&file.display().to_string(), &text));
        }
    }
    Ok(docs)
}

fn files_under(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let err = |error| LoadError {
        path: path.display().to_string(),
        error,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(err)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(err)? {
        let p = entry.map_err(err)?.path();
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `amlops validate -f missing` says what is wrong once (the command line prints the
    /// whole error chain).
    #[test]
    fn a_missing_file_is_named_once() {
        let e = load_paths(&[PathBuf::from("/nonexistent/amlops")]).unwrap_err();
        let shown = format!("{:#}", anyhow::Error::from(e));
        assert!(shown.starts_with("/nonexistent/amlops: "), "{shown}");
        assert_eq!(shown.matches("os error").count(), 1, "{shown}");
    }
}
