//! `amlops validate`: per-object OK or errors, non-zero exit on any error.

use std::io::Write;
use std::path::PathBuf;

use crate::validate::{Checked, Manifest, check_object, describe_value, load_paths};

/// Arguments of `amlops validate`.
#[derive(clap::Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Files or directories of manifests (multi-document YAML); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Also print the ARM request body create/attach would send (secrets redacted;
    /// InferenceCluster and ClusterAttachment).
    #[arg(long)]
    pub plan: bool,
}

/// Validate, print a report to `out`, and return whether everything passed.
///
/// # Errors
/// When a path cannot be read ([`LoadError`](crate::validate::LoadError)), `out` cannot be
/// written, or a plan cannot be serialised. Invalid manifests are not errors: they make
/// the result `Ok(false)`.
pub fn run(args: &ValidateArgs, out: &mut dyn Write) -> anyhow::Result<bool> {
    let docs = load_paths(&args.files)?;
    if docs.is_empty() {
        writeln!(out, "no objects found in the given files")?;
        return Ok(false);
    }
    let (mut ok, mut failed) = (0usize, 0usize);
    for doc in &docs {
        let location = format!("{}#{}", doc.source, doc.index);
        match &doc.value {
            Err(e) => {
                failed += 1;
                writeln!(out, "ERROR {location}: {e}")?;
            }
            Ok(value) => match check_object(value, None) {
                Ok(checked) => {
                    ok += 1;
                    writeln!(out, "OK    {} ({location})", checked.describe())?;
                    if let (true, Checked::Legacy(manifest)) = (args.plan, &checked) {
                        print_plan(manifest, out)?;
                    }
                }
                Err(findings) => {
                    failed += 1;
                    writeln!(out, "ERROR {} ({location})", describe_value(value))?;
                    for f in findings {
                        writeln!(out, "  - {f}")?;
                    }
                }
            },
        }
    }
    writeln!(out, "{ok} valid, {failed} invalid")?;
    Ok(failed == 0)
}

/// The create/attach PUT body, as the engine builds it; the location is the workspace's (read
/// at reconcile time) and a Custom certificate and key are shown as `<redacted>`.
fn print_plan(manifest: &Manifest, out: &mut dyn Write) -> anyhow::Result<()> {
    use crate::engine::body;
    let d = manifest.desired();
    let redacted = body::TlsMaterial {
        cert: "<redacted>".into(),
        key: "<redacted>".into(),
        cname: d.tls.cname.clone().unwrap_or_default(),
    };
    let custom = d.tls.mode == crate::crd::TlsMode::Custom;
    let req = body::provision_body(
        &d,
        "<workspace location>",
        custom.then_some(&redacted),
        None,
    )
    .for_request();
    writeln!(
        out,
        "      PUT {}?api-version={}",
        d.compute_id(),
        crate::azure::MLS_API_VERSION
    )?;
    for line in serde_json::to_string_pretty(&req)?.lines() {
        writeln!(out, "      {line}")?;
    }
    Ok(())
}
