//! The emulator driven by a client nobody here wrote: the Azure ML Python SDK v1
//! (`azureml-core`, from PyPI, unmodified) runs the how-to's scenarios against an emulator
//! started here (`tests/sdk_v1/test_sdk_v1.py`, through `tests/sdk_v1/run.sh`, which creates
//! and caches the SDK's virtualenv). Needs python3 and PyPI, as CI has.

use amlops::emulator::{Emulator, EmulatorConfig};
use base64::Engine;

/// An unsigned JWT as the emulator's bearer token: the SDK decodes its ARM token (without
/// verifying it) for `exp` and `tid`, as real Azure AD tokens carry them. The emulator only
/// compares the token with the one it was configured with.
fn jwt_token() -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let tenant = "00000000-0000-0000-0000-000000000001";
    format!(
        "{}.{}.emulator",
        b64(serde_json::json!({"typ": "JWT", "alg": "none"})),
        b64(serde_json::json!({
            "aud": "https://management.azure.com/",
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "tid": tenant,
            "oid": "00000000-0000-0000-0000-000000000002",
            "exp": 4_102_444_800u64, // 2100-01-01
        }))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azureml_sdk_v1_drives_the_emulator() {
    // Instant operations (the SDK polls every 5 s only while an operation runs) and
    // two computes per list page, so the list scenario follows nextLink.
    let emu = Emulator::start(EmulatorConfig {
        token: jwt_token(),
        ..EmulatorConfig::for_tests()
    })
        .await
        .expect("emulator starts");
    let out = tokio::process::Command::new("bash")
        .arg("tests/sdk_v1/run.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AMLOPS_EMULATOR_URL", emu.base_url())
        .env("AMLOPS_EMULATOR_TOKEN", emu.token())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("bash runs tests/sdk_v1/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the Azure ML SDK v1 scenarios failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(" passed") && !stdout.contains(" failed"),
        "pytest ran no scenario:\n{stdout}"
    );
}
