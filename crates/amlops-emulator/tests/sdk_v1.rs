//! The emulator driven by a client nobody here wrote: the Azure ML Python SDK v1
//! (`azureml-core`, from PyPI, unmodified) runs the how-to's scenarios against an emulator
//! started here (`tests/sdk_v1/test_sdk_v1.py`, through `tests/sdk_v1/run.sh`, which creates
//! and caches the SDK's virtualenv). Needs python3 and PyPI, as CI has.

use amlops_emulator::{Emulator, EmulatorConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azureml_sdk_v1_drives_the_emulator() {
    // Instant operations (the SDK polls every 5 s only while an operation runs) and
    // two computes per list page, so the list scenario follows nextLink.
    let emu = Emulator::start(EmulatorConfig::for_tests())
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
